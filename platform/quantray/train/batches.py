"""Batches gathered on the training device from device-resident features and labels.

`DeviceWindows` copies a `Windows`' base arrays (features [T, A, F], mask, labels, news, risk) to the
device once; a batch is then an index gather there, so a GPU run copies no window from the host
per step (on a CPU the tensors share the numpy memory). It yields exactly what `Windows.gather`
yields, as tensors with the dtypes the models and the objective expect.
"""

from __future__ import annotations

import numpy as np
import torch

from quantray.data.risk import RISK_KEYS
from quantray.data.windows import FLOAT_LABELS, Windows


class DeviceWindows:
    def __init__(self, windows: Windows, device: str | torch.device) -> None:
        self.windows = windows
        self.lookback = windows.lookback
        self.device = torch.device(device)
        self.features = self._tensor(windows.features, torch.float32)
        self.mask = self._tensor(windows.mask, torch.bool)
        labels = windows.labels
        self.known = self._tensor(np.isfinite(labels.next_return) & np.isfinite(labels.fwd_return), torch.bool)
        # labels as the batches carry them: unknown values 0, float32 (what Windows.gather does per batch)
        self.floats = {name: self._tensor(np.nan_to_num(getattr(labels, name), nan=0.0, posinf=0.0, neginf=0.0),
                                          torch.float32) for name in FLOAT_LABELS}
        self.ints = {name: self._tensor(getattr(labels, name), torch.long) for name in ("direction", "regime", "barrier")}
        self.asset_ids = torch.arange(windows.n_assets, device=self.device)
        self.steps = torch.arange(-self.lookback + 1, 1, device=self.device)  # window offsets, oldest first
        news = windows.news
        self.news = None if news is None else (self._tensor(news.values, torch.float32),
                                               self._tensor(news.present, torch.bool))
        self.news_steps = None if news is None else torch.arange(-news.window + 1, 1, device=self.device)
        risk = windows.risk
        self.risk = None if risk is None else {name: self._tensor(getattr(risk, name), torch.float32)
                                               for name in RISK_KEYS}

    def _tensor(self, array: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
        return torch.as_tensor(np.ascontiguousarray(array), device=self.device).to(dtype)

    def __len__(self) -> int:
        return len(self.windows)

    def batch(self, rows: np.ndarray | slice) -> dict[str, torch.Tensor]:
        """The samples at positions `rows` of the windows' sample dates."""
        return self.gather(self.windows.dates_idx[rows])

    def gather(self, date_idx: np.ndarray) -> dict[str, torch.Tensor]:
        """The samples at date indices `date_idx` (int [B]): `Windows.gather`'s batch, on the device."""
        t = torch.as_tensor(np.asarray(date_idx, dtype=np.int64).reshape(-1), device=self.device)
        mask = self.mask[t] & self.mask[t - self.lookback + 1]  # valid at both ends of the window
        x = self.features[t[:, None] + self.steps].permute(0, 2, 1, 3).contiguous()  # [B, L, A, F] -> [B, A, L, F]
        out = {
            "x": x,
            "mask": mask,
            "asset_ids": self.asset_ids,
            "label_mask": mask & self.known[t],
            "date_idx": t,
        }
        out.update({name: values[t] for name, values in self.ints.items()})
        out.update({name: values[t] for name, values in self.floats.items()})
        if self.news is not None:
            out["news"], out["news_mask"] = self._gather_news(t)
        if self.risk is not None:
            out.update({name: values[t] for name, values in self.risk.items()})
        return out

    def _gather_news(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`NewsTokens.gather` on the device: the N bars up to t, oldest first; bars before the
        history are masked."""
        values, present = self.news  # type: ignore[misc]
        bars = t[:, None] + self.news_steps  # [B, N]
        inside = bars >= 0
        bars = bars.clamp(min=0)
        return values[bars], present[bars] & inside
