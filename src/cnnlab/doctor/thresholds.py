"""Every threshold the doctor's rules use, in one place: the rules compare against these, the
findings quote them in their evidence, and `findings.RULES` (the README's table) is written
from them, so the documentation cannot drift from the code.

Update-to-weight ratios are |w_after - w_before| / |w_before| for one optimizer step at the
configured peak learning rate, from the run's initial weights (median over weight tensors).
"""

STUCK_LOSS_FRACTION = 0.95  # final train loss >= 95% of the baseline loss: nothing learnt
STUCK_ACC_MARGIN = 0.02  # best validation accuracy within 2 points of the majority-class rate
ONE_CLASS_SHARE = 0.95  # share of predictions going to one class
ONE_CLASS_MAX_TRUE_SHARE = 0.80  # ...while that class is a smaller share of the images
UPDATE_RATIO_HIGH = 0.3  # 10x the healthy default's (smallcnn, SGD lr 0.1: 0.03)
UPDATE_RATIO_LOW = 1e-4  # 300x below it
TARGET_UPDATE_RATIO = 0.03  # suggested lrs put the first step here, where healthy runs are
UPDATE_RATIO_EXTREME = 3.0  # 100x the healthy step: a finding even before training fails
VAL_LOSS_BLOWUP = 3.0  # validation loss above 3x the baseline loss: unstable training
LABEL_SIGNAL_MIN_STEPS = 50  # "nothing learnt" blames the labels only after this many steps
LABEL_SIGNAL_LR_SHARE = 0.3  # ...at a mean lr (over epochs) of at least 30% of the peak
VAL_SWING = 0.10  # validation accuracy falling 10 points between two late epochs...
UNANNEALED_LR_SHARE = 0.5  # ...while the last epoch's lr is still half its peak or more
LR_USUAL_MAX = {"sgd": 1.0, "adam": 0.01, "adamw": 0.01}
LOW_PROGRESS = 0.3  # training removed less than 30% of the baseline loss
OVERFIT_BATCH, OVERFIT_STEPS = 16, 40  # the one-batch fit probe
VANISHING_RATIO = 1e-4  # first-layer / last-layer gradient norm
EXPLODING_GROWTH, EXPLODING_ABS = 100.0, 1e4  # mean gradient norm: growth over the run, value
DEAD_RELU_FRACTION = 0.5
ACT_RATIO_LOW, ACT_RATIO_HIGH = 1e-2, 1e2  # output std / first-layer output std at init
INIT_LOSS_EXCESS = 1.0  # initial loss > ln C + 1: overconfident outputs at initialisation
OVERFIT_GAP, OVERFIT_VAL_RISE = 0.15, 1.2
# ...or a wider gap that keeps opening: over the last OVERFIT_WINDOW epochs the training loss
# still fell by OVERFIT_TRAIN_LOSS_DROP (of its value) while validation accuracy stayed below its
# earlier best (a small training set on a large model: the validation loss creeps down while
# validation accuracy stalls). The loss, not the accuracy: on 100 images one image is 1 point.
OVERFIT_WIDE_GAP, OVERFIT_WINDOW, OVERFIT_TRAIN_LOSS_DROP = 0.25, 3, 0.05
# ...or the plain gap on a training set too small to learn from scratch (images per class, no
# pretrained weights): there the gap is the problem even while validation still creeps up
OVERFIT_TINY_PER_CLASS = 50
OVERFIT_ABOVE_CHANCE = 0.05  # ...and validation accuracy above the majority rate by this much
UNDERFIT_ACC, UNDERFIT_FLAT = 0.6, 0.03
UNDERTRAINED_GAIN, UNDERTRAINED_SHARE = 0.02, 0.25
# training accuracy at which a run has fitted its data: more epochs have nothing left to learn
UNDERTRAINED_FITTED = 0.99
IMBALANCE_RATIO, MINORITY_RECALL_SHARE = 10.0, 0.5
NOISE_GAP = 0.10  # val accuracy - train accuracy, same model, no augmentation
MEMORISE_TRAIN_ACC = 0.9
BN_GAP = 0.10  # accuracy with batch statistics - accuracy with running statistics
# Below 8 images per batch BatchNorm's error climbs steeply (Wu & He, Group Normalization,
# 2018, fig. 1); flagged when a measured symptom shows it: the two modes disagree, or
# validation (running statistics) beats training (batch statistics) by far
BN_MIN_BATCH, BN_TINY_BATCH_GAP, BN_TINY_BATCH_VAL_GAP = 8, 0.03, 0.10
INPUT_MEAN_MAX, INPUT_STD_LO, INPUT_STD_HI, INPUT_STD_RAW = 1.5, 0.3, 3.0, 20.0
LEAK_FRACTION = 0.01
VAL_ABOVE_GAP, VAL_ABOVE_WARN = 0.03, 0.15
DECAY_PER_STEP = 1e-3  # lr x weight decay: the weights shrink 0.1% per step
ADAM_L2_MAX = 0.01
WD_USUAL_SGD, WD_USUAL_ADAMW = 5e-3, 0.1  # common settings stay at or below these
CHECK_MIN_STEPS = 20  # epoch_check: no verdict on "stuck" before this many optimizer steps
