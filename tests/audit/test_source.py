import numpy as np
from audittree import make_tree, photo, save

from cnnlab.audit import source
from cnnlab.audit.embed import ModelEmbedder
from cnnlab.data.split import assign_splits, discover
from cnnlab.models.spec import PreprocessSpec

SPEC = PreprocessSpec(input_size=(3, 32, 32), mean=(0.5,) * 3, std=(0.5,) * 3)


def class_folder_tree(root, n=10):
    for cls in ("cat", "dog"):
        for k in range(n):
            save(root / cls / f"{k:02d}.png", photo(k + (50 if cls == "dog" else 0)))
    return root


def test_class_folders_get_the_training_split_rule(tmp_path, cache_dir):
    root = class_folder_tree(tmp_path / "d")
    src = source.folder_source(
        root,
        spec=SPEC,
        val_fraction=0.2,
        test_fraction=0.2,
        seed=3,
        cache_dir=cache_dir,
        log=lambda s: None,
    )
    # independently: the split rule applied to the discovered files
    cands = discover(root).cands
    expected = dict(
        zip(
            (c.rel for c in cands),
            assign_splits([(c.rel, c.label) for c in cands], 0.2, 0.2, 3),
            strict=True,
        )
    )
    assert dict(zip(src.rels, src.splits, strict=True)) == expected
    assert sorted(set(src.splits)) == ["test", "train", "val"]
    assert src.classes == ["cat", "dog"]
    assert [src.classes[y] for y in src.labels] == [r.split("/")[0] for r in src.rels]
    a = src.pixels.get(0)
    assert a.dtype == np.uint8 and min(a.shape[:2]) == 32  # cached at the spec's resize
    assert src.summary()["images"] == {"train": 12, "val": 4, "test": 4}


def test_split_dirs_and_csv(tmp_path, cache_dir):
    root = make_tree(tmp_path / "t", per_class=3, val_per_class=1)
    src = source.folder_source(root, spec=SPEC, cache_dir=cache_dir, log=lambda s: None)
    assert {r: s for r, s in zip(src.rels, src.splits, strict=True)}["val/red/red_00.jpg"] == "val"
    assert src.layout == "split_dirs" and len(src) == 8
    csv = tmp_path / "t" / "list.csv"
    csv.write_text("path,label,split\ntrain/red/red_00.jpg,red,train\nval/blue/blue_00.jpg,blue,test\n"
                   "train/blue/blue_01.jpg,blue,train\ntrain/red/red_01.jpg,red,val\n")  # fmt: skip
    src = source.folder_source(csv, spec=SPEC, cache_dir=cache_dir, log=lambda s: None)
    assert src.layout == "csv"
    assert dict(zip(src.rels, src.splits, strict=True))["val/blue/blue_00.jpg"] == "test"


def test_from_folder_data_reuses_the_run_pixels(tmp_path, cache_dir):
    from cnnlab.data.folder import build_folder_data

    root = class_folder_tree(tmp_path / "d", n=6)
    data = build_folder_data(root, image_size=32, in_chans=3, preprocess=SPEC, cache="memory",
                             cache_dir=cache_dir, log=lambda s: None, val_fraction=0.34)  # fmt: skip
    src = source.from_folder_data(data)
    assert len(src) == 12
    first_val = src.splits.index("val")
    assert np.array_equal(src.pixels.get(first_val), data.val.raw(0))
    assert src.rels[first_val] == data.manifest_rows[first_val].path


def test_fashion_mnist_source_uses_the_builtin_split(fake_fmnist):
    from cnnlab.data.builtin import stratified_split

    arrays, labels = fake_fmnist
    src = source.fashion_mnist_source(val_fraction=0.2, seed=1)
    _, val = stratified_split(labels["train"], 0.2, 1)
    assert [i for i, s in enumerate(src.splits) if s == "val"] == val.tolist()
    last = len(labels["test"]) - 1  # the names of a run's split_manifest.csv
    assert src.rels[0] == "train-images#0" and src.rels[-1] == f"t10k-images#{last}"
    assert src.native and src.paths is None
    assert np.array_equal(src.pixels.get(len(labels["train"]))[:, :, 0], arrays["test"][0])


def test_model_embedder_key_names_weights_and_preprocessing():
    e = ModelEmbedder("efficientnet_lite0")
    assert e.key.startswith("efficientnet_lite0-") and e.preprocess.input_size == (3, 224, 224)
