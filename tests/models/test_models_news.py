"""The news channel of the attention families: news reaches the positions, masked news tokens
and a missing news batch are handled, and the option needs data with news. (Shapes,
permutation equivariance, masked assets and bf16 autocast with news run in the shared contract
tests through model_cases.WithNews.)"""

from __future__ import annotations

import pytest
import torch
from model_cases import A, F, L, NEWS_DIM, build_small, random_inputs, random_news

from quantray import models

NEWS_FAMILIES = ("transformer", "hybrid")


@pytest.mark.parametrize("family", NEWS_FAMILIES)
def test_news_reaches_the_outputs_and_masked_news_does_not(family: str) -> None:
    model = build_small(family, news_attention=True).model.eval()
    x, asset_ids, mask = random_inputs(seed=21)
    news, news_mask = random_news(x.shape[0])
    with torch.no_grad():
        base = model(x, asset_ids, mask, news=news, news_mask=news_mask)
        hidden = news.clone()
        hidden[~news_mask] = 1e3  # junk where there is no news
        same = model(x, asset_ids, mask, news=hidden, news_mask=news_mask)
        changed = news.clone()
        changed[:, -1] = torch.randn_like(changed[:, -1])  # the latest bar's news differs
        moved = model(x, asset_ids, mask, news=changed, news_mask=news_mask)
        without = model(x, asset_ids, mask)  # no news: every asset reads the null token
    torch.testing.assert_close(same.position, base.position)
    assert not torch.allclose(moved.position[mask], base.position[mask], atol=1e-5)
    assert without.position.shape == base.position.shape and torch.isfinite(without.position).all()
    assert (moved.position[~mask] == 0).all()


@pytest.mark.parametrize("family", models.FAMILIES)
def test_every_family_accepts_news_and_the_option_needs_it(family: str) -> None:
    model = build_small(family).eval()
    x, asset_ids, mask = random_inputs(seed=22)
    news, news_mask = random_news(x.shape[0])
    with torch.no_grad():
        plain, given = model(x, asset_ids, mask), model(x, asset_ids, mask, news=news, news_mask=news_mask)
    torch.testing.assert_close(given.position, plain.position)  # without news_attention news is not read
    if family in NEWS_FAMILIES:
        with pytest.raises(ValueError, match="news_attention"):
            models.build(family, n_assets=A, n_features=F, lookback=L, news_attention=True)
        assert models.build(family, n_assets=A, n_features=F, lookback=L, news_dim=NEWS_DIM,
                            news_attention=True).news is not None
