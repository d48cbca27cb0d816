"""Choose the data source from the config and hand back a `DataBundle`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from cnnlab.config import Config
from cnnlab.data.bundle import DataBundle

if TYPE_CHECKING:
    from cnnlab.plan import InputPlan


def build_data(
    cfg: Config,
    inputs: InputPlan,
    *,
    manifest: Path | None = None,
    log: Callable[[str], None] = print,
) -> DataBundle:
    """The run's data at `inputs`' size and channels. `inputs.preprocess` None means "from
    scratch": the source measures mean/std on its training split. With `manifest` (a run's
    split_manifest.csv) the files and splits are the run's own."""
    d = cfg.data
    if d.dataset == "fashion-mnist":
        from cnnlab.data.builtin import build_fashion_mnist

        return build_fashion_mnist(
            data_dir=d.data_dir,
            preprocess=inputs.preprocess,
            image_size=inputs.image_size,
            in_chans=inputs.in_chans,
            augment=d.augment,
            val_fraction=d.val_fraction,
            seed=cfg.train.seed,
            subset=d.subset,
            manifest=manifest,
        )
    from cnnlab.data.folder import build_folder_data

    folder = build_folder_data(
        d.path,
        image_size=inputs.image_size,
        in_chans=inputs.in_chans,
        preprocess=inputs.preprocess,
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
        allow_changed=d.allow_changed_data,
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
        folder=folder,
    )
