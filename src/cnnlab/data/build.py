"""Choose the data source from the config and hand back a `DataBundle`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from cnnlab.config import Config
from cnnlab.data.bundle import DataBundle
from cnnlab.models.spec import PreprocessSpec


def build_data(
    cfg: Config,
    *,
    preprocess: PreprocessSpec | None,
    image_size: int,
    in_chans: int,
    manifest: Path | None = None,
    log: Callable[[str], None] = print,
) -> DataBundle:
    """`preprocess` None means "from scratch": the source measures mean/std on its train split."""
    d = cfg.data
    if d.dataset == "fashion-mnist":
        from cnnlab.data.builtin import build_fashion_mnist

        return build_fashion_mnist(
            data_dir=d.data_dir,
            preprocess=preprocess,
            image_size=image_size,
            in_chans=in_chans,
            augment=d.augment,
            val_fraction=d.val_fraction,
            seed=cfg.train.seed,
            subset=d.subset,
        )
    from cnnlab.data.folder import build_folder_data

    folder = build_folder_data(
        d.path,
        image_size=image_size,
        in_chans=in_chans,
        preprocess=preprocess,
        augment="light" if d.augment == "default" else d.augment,
        val_fraction=d.val_fraction,
        test_fraction=d.test_fraction,
        seed=cfg.train.seed,
        cache=d.cache,
        workers=d.workers,
        on_bad_image=d.on_bad_image,
        manifest=manifest,
        log=log,
        output="uint8",
    )
    return DataBundle(
        classes=folder.classes,
        train=folder.train,
        val=folder.val,
        test=folder.test,
        preprocess=folder.preprocess,
        class_counts=folder.class_counts,
        source={"dataset": d.dataset, "path": str(d.path), "layout": folder.layout},
        summary=folder.summary_lines(),
        class_weights=folder.class_weights(),
        write_artifacts=folder.write_artifacts,
        batch_transform=folder.batch_transform(),
    )
