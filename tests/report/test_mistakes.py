import numpy as np

from cnnlab.report.mistakes import confident_mistakes


def test_mistakes_are_ordered_by_the_confidence_of_the_wrong_prediction():
    probs = np.array(
        [
            [0.9, 0.1],  # 0: right
            [0.3, 0.7],  # 1: wrong (true 0), 0.7
            [0.95, 0.05],  # 2: wrong (true 1), 0.95
            [0.4, 0.6],  # 3: right
            [0.2, 0.8],  # 4: wrong (true 0), 0.8
            [0.3, 0.7],  # 5: wrong (true 0), 0.7: tie with 1, later index
        ]
    )
    targets = np.array([0, 0, 1, 1, 0, 0])
    assert confident_mistakes(probs, targets, 10) == [2, 4, 1, 5]
    assert confident_mistakes(probs, targets, 2) == [2, 4]
    assert confident_mistakes(probs[[0, 3]], targets[[0, 3]], 5) == []
