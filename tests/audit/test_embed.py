import numpy as np
import pytest
import torch
from audittree import RandomFeatures, photo

from cnnlab.audit.embed import EmbeddingCache, embed_all


def images(n):
    return [photo(i) for i in range(n)]


def test_embeddings_are_cached_by_content(tmp_path):
    imgs = images(5)
    keys = [f"k{i}" for i in range(5)]
    emb = RandomFeatures()
    first, cached = embed_all(imgs.__getitem__, keys, emb, tmp_path, log=lambda s: None)
    assert first.shape == (5, 64) and cached == 0 and emb.calls == 5
    # the same pixels under any name: nothing recomputed
    again, cached = embed_all(imgs[::-1].__getitem__, keys[::-1], emb, tmp_path, log=lambda s: None)
    assert emb.calls == 5 and cached == 5
    assert np.allclose(again, first[::-1])
    # a new image costs one computation; equal keys in one call are computed once
    more = [*imgs, photo(99), photo(99)]
    out, cached = embed_all(
        more.__getitem__, [*keys, "new", "new"], emb, tmp_path, log=lambda s: None
    )
    assert emb.calls == 6 and cached == 5 and np.allclose(out[5], out[6])


def test_embedding_equals_the_model_on_the_eval_transform(tmp_path):
    from cnnlab.data.transforms import eval_transform

    emb = RandomFeatures()
    a = photo(1)
    out, _ = embed_all([a].__getitem__, ["x"], emb, None, log=lambda s: None)
    x = eval_transform(emb.preprocess)(torch.from_numpy(a).permute(2, 0, 1))
    assert np.allclose(out[0], emb(x[None])[0].numpy(), atol=1e-6)


def test_grayscale_pixels_are_replicated_for_an_rgb_model():
    emb = RandomFeatures()
    g = photo(2)[:, :, :1]
    rgb = np.repeat(g, 3, axis=2)
    out, _ = embed_all([g, rgb].__getitem__, ["g", "rgb"], emb, None, log=lambda s: None)
    assert np.allclose(out[0], out[1], atol=1e-6)


def test_a_damaged_chunk_is_ignored(tmp_path):
    folder = tmp_path / "c"
    cache = EmbeddingCache(folder)
    cache.add(["a", "b"], np.ones((2, 3), np.float32))
    assert set(EmbeddingCache(folder).rows) == {"a", "b"}
    next(folder.glob("*.npy")).write_bytes(b"garbage")
    assert EmbeddingCache(folder).rows == {}


@pytest.mark.slow
def test_real_lite0_embeddings_see_a_flipped_copy(tmp_path):
    from PIL import Image

    from cnnlab.audit.embed import ModelEmbedder

    try:
        emb = ModelEmbedder()
    except Exception as e:  # the weights package is not installed
        pytest.skip(str(e))
    rng = np.random.default_rng(0)
    imgs = [  # smooth random scenes at a photo's size
        np.array(Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).resize(
            (320, 240), Image.Resampling.BICUBIC))
        for _ in range(6)
    ]  # fmt: skip
    imgs.append(np.ascontiguousarray(imgs[0][:, ::-1]))
    out, _ = embed_all(
        imgs.__getitem__, [str(i) for i in range(7)], emb, tmp_path, log=lambda s: None
    )
    assert out.shape == (7, 1280)
    n = out / np.linalg.norm(out, axis=1, keepdims=True)
    sims = n[6] @ n[:6].T
    assert sims.argmax() == 0 and sims[0] > 0.9
