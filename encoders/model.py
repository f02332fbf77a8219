"""The Auto Risk behavior-sequence encoder (seeds 000/001/004), in the style of nanoGPT's model.py.

Event fields are embedded and added, then ``n_blocks`` blocks of
(gated depthwise-separable convolution, sliding-window attention), each pre-norm with a residual.
Every layer only looks left (causal convolution, causal windowed attention), so the hidden state
at position t depends on events ``t - receptive_field + 1 .. t`` only. That makes two uses exact
and equal:

- encode one case's window (its last ``max_len`` events) and read the last position, or
- encode an entity's whole history once and read every case off the position just before its ts,

which is what makes embedding a million cases cheap. Attention memory is O(T * 2W), not O(T^2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class AutoRiskConfig:
    cat_cardinalities: list[int] = field(default_factory=list)  # per categorical field, incl. 0/1
    n_numeric: int = 0
    num_buckets: int = 32  # quantile buckets per numeric field (targets use 0..num_buckets)
    n_text: int = 0
    text_buckets: int = 4096
    d_model: int = 64
    n_blocks: int = 3
    kernel_size: int = 5  # width K of the depthwise convolution
    n_heads: int = 4
    window: int = 32  # attention looks at the last `window` positions (block size W)
    pool_window: int = 64  # the mean pool covers the last `pool_window` hidden states
    max_len: int = 256  # L: a case's sequence is its last L events
    out_dim: int = 64
    dropout: float = 0.0
    # A next-event head: p(event t's fields | events before t, t's timing). Its negative
    # log-likelihood of a case's own event (how surprising the event is for this entity) joins
    # the case's vector, one column per field (:attr:`embedding_dim`).
    next_event: bool = True
    # With the next-event head, one more column per numeric field: where the case's own value
    # falls in the distribution the head predicts for it (centered PIT, -0.5: below anything
    # expected, +0.5: above): "five times what this customer usually spends", signed and learned.
    # Off by default: on fraud_handbook it ranks like the amount-deviation feature in the bulk
    # (Spearman 0.97) but not in the fraud-rich tail, and added nothing offline or in the loop
    # over 3 pretraining seeds (docs/benchmarks.md, "The own value's place ... (PIT)").
    pit: bool = False
    # With the next-event head, a Gaussian head per numeric field on the next event's
    # standardized value (a mean and a spread from the entity's history); the own value's
    # z-score under it joins the vector, one column per numeric field: "this amount against what
    # this customer's history predicts", learned. On for encoders built from now on
    # (encoders.api.build_model); off in older checkpoints, which have no such head.
    num_regression: bool = False

    @property
    def n_fields(self) -> int:
        """Event fields the heads predict: the categorical ones, then the numeric buckets."""
        return len(self.cat_cardinalities) + self.n_numeric

    @property
    def n_surprise(self) -> int:
        """Columns after the pooled vector: a surprise per field, then per numeric field a PIT
        (``pit``) and a z-score (``num_regression``)."""
        if not self.next_event:
            return 0
        return (
            self.n_fields
            + (self.n_numeric if self.pit else 0)
            + (self.n_numeric if self.num_regression else 0)
        )

    @property
    def embedding_dim(self) -> int:
        """Columns of a case's embedding: the pooled vector, then the own event's surprise."""
        return self.out_dim + self.n_surprise

    @property
    def receptive_field(self) -> int:
        return self.n_blocks * ((self.kernel_size - 1) + (self.window - 1)) + 1

    def validate(self) -> None:
        assert self.d_model % self.n_heads == 0, "d_model must be divisible by n_heads"
        # hidden states inside the pool must see their full context within the last L events
        assert self.pool_window + self.receptive_field - 1 <= self.max_len, (
            f"pool_window + receptive_field - 1 = {self.pool_window + self.receptive_field - 1}"
            f" exceeds max_len = {self.max_len}"
        )


class EventEmbedding(nn.Module):
    """Embeds each field of an event and adds them: (B, T, ...) inputs -> (B, T, D)."""

    def __init__(self, config: AutoRiskConfig) -> None:
        super().__init__()
        d = config.d_model
        self.cat = nn.ModuleList(
            nn.Embedding(n, d, padding_idx=0) for n in config.cat_cardinalities
        )
        self.num = nn.Linear(config.n_numeric, d) if config.n_numeric else None
        self.num_bucket = nn.ModuleList(
            nn.Embedding(config.num_buckets + 1, d, padding_idx=0) for _ in range(config.n_numeric)
        )
        self.text = (
            nn.Embedding(config.text_buckets + 1, d, padding_idx=0) if config.n_text else None
        )
        self.time = nn.Linear(2, d)
        self.hour = nn.Embedding(24, d)
        self.weekday = nn.Embedding(7, d)
        self.mask_token = nn.Parameter(torch.zeros(d))
        self.ln = nn.LayerNorm(d)

    def forward(self, batch: dict[str, torch.Tensor], event_mask: torch.Tensor | None = None):
        content = 0.0
        for j, emb in enumerate(self.cat):
            content = content + emb(batch["cat"][..., j])
        if self.num is not None:
            content = content + self.num(batch["num"])
            for j, emb in enumerate(self.num_bucket):
                content = content + emb(batch["num_bucket"][..., j])
        if self.text is not None:
            ids = batch["text"]  # (B, T, X, G)
            vecs = self.text(ids)  # (B, T, X, G, D)
            present = (ids > 0).unsqueeze(-1).to(vecs.dtype)
            pooled = (vecs * present).sum(-2) / present.sum(-2).clamp(min=1.0)  # (B, T, X, D)
            content = content + pooled.sum(-2)
        if not torch.is_tensor(content):
            content = torch.zeros(*batch["hour"].shape, self.mask_token.numel())
        if event_mask is not None:
            # masked events keep their timing but hide every field value
            content = torch.where(event_mask.unsqueeze(-1), self.mask_token, content)
        return self.ln(content + self.timing(batch))  # (B, T, D)

    def timing(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The part of each event's embedding known before its fields: gap, hour, weekday."""
        return (
            self.time(batch["time_num"]) + self.hour(batch["hour"]) + self.weekday(batch["weekday"])
        )


class GatedSeparableConv(nn.Module):
    """Causal depthwise conv (width K) -> pointwise to 2D -> GLU gate: (B, T, D) -> (B, T, D)."""

    def __init__(self, d_model: int, kernel_size: int) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.depthwise = nn.Conv1d(d_model, d_model, kernel_size, groups=d_model)
        self.pointwise = nn.Linear(d_model, 2 * d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.pad(x.transpose(1, 2), (self.kernel_size - 1, 0))  # (B, D, T + K - 1), left only
        y = self.depthwise(y).transpose(1, 2)  # (B, T, D)
        return F.glu(self.pointwise(y), dim=-1)  # (B, T, D)


class SlidingWindowAttention(nn.Module):
    """Causal attention over the last W positions, computed block by block.

    The sequence is cut into blocks of W; each block's queries attend to keys of the same and the
    previous block (2W keys) under a causal window mask, so memory is O(T * 2W).
    """

    INFERENCE_BLOCKS = 8  # blocks per attention call when no gradient is needed

    def __init__(self, d_model: int, n_heads: int, window: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.window = window
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.dropout = dropout
        i = torch.arange(window).unsqueeze(1)  # query offset inside its block
        j = torch.arange(2 * window).unsqueeze(0) - window  # key offset relative to block start
        self.register_buffer("band", (j <= i) & (j > i - window), persistent=False)  # (W, 2W)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape
        W, H = self.window, self.n_heads
        n_blocks = math.ceil(T / W)
        pad = n_blocks * W - T
        q, k, v = self.qkv(F.pad(x, (0, 0, 0, pad))).split(D, dim=-1)  # each (B, nW, D)

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(B, n_blocks, W, H, D // H).permute(0, 3, 1, 2, 4)  # (B, H, n, W, hd)

        q, k, v = heads(q), heads(k), heads(v)
        k = torch.cat([F.pad(k, (0, 0, 0, 0, 1, 0))[:, :, :-1], k], dim=3)  # (B, H, n, 2W, hd)
        v = torch.cat([F.pad(v, (0, 0, 0, 0, 1, 0))[:, :, :-1], v], dim=3)
        mask = self.band.unsqueeze(0).repeat(n_blocks, 1, 1)  # (n, W, 2W)
        mask[0, :, :W] = False  # nothing before the first block
        dropout_p = self.dropout if self.training else 0.0
        if torch.is_grad_enabled() or n_blocks <= self.INFERENCE_BLOCKS:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)
        else:
            # Without autograd nothing has to be kept for a backward pass, so the (W x 2W) score
            # tiles are made a few blocks at a time: the same result, a fraction of the peak memory.
            y = torch.empty_like(q)  # (B, H, n, W, hd)
            for start in range(0, n_blocks, self.INFERENCE_BLOCKS):
                part = slice(start, start + self.INFERENCE_BLOCKS)
                y[:, :, part] = F.scaled_dot_product_attention(
                    q[:, :, part],
                    k[:, :, part],
                    v[:, :, part],
                    attn_mask=mask[part],
                    dropout_p=dropout_p,
                )
        y = y.permute(0, 2, 3, 1, 4).reshape(B, n_blocks * W, D)[:, :T]
        return self.proj(y)  # (B, T, D)


class Block(nn.Module):
    def __init__(self, config: AutoRiskConfig) -> None:
        super().__init__()
        d = config.d_model
        self.ln_conv = nn.LayerNorm(d)
        self.conv = GatedSeparableConv(d, config.kernel_size)
        self.ln_attn = nn.LayerNorm(d)
        self.attn = SlidingWindowAttention(d, config.n_heads, config.window, config.dropout)
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.conv(self.ln_conv(x)))
        x = x + self.drop(self.attn(self.ln_attn(x)))
        return x  # (B, T, D)


class AutoRiskEncoder(nn.Module):
    """Behavior sequence -> vector; masked-event heads for pretraining.

    Inputs are right-padded batches (dict of tensors from :func:`encoders.batches.make_batch`)
    with ``mask`` (B, T) True on real events.
    """

    def __init__(self, config: AutoRiskConfig) -> None:
        super().__init__()
        config.validate()
        self.config = config
        d = config.d_model
        self.embed = EventEmbedding(config)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_blocks))
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(2 * d + 1, config.out_dim)  # [last state, window mean, case gap]
        self.cat_heads = nn.ModuleList(nn.Linear(d, n) for n in config.cat_cardinalities)
        self.num_heads = nn.ModuleList(
            nn.Linear(d, config.num_buckets + 1) for _ in range(config.n_numeric)
        )
        if config.next_event:
            self.next_in = nn.LayerNorm(d)
            self.next_heads = nn.ModuleList(
                [nn.Linear(d, n) for n in config.cat_cardinalities]
                + [nn.Linear(d, config.num_buckets + 1) for _ in range(config.n_numeric)]
            )
            if config.num_regression and config.n_numeric:
                self.next_num = nn.Linear(d, 2 * config.n_numeric)

    def hidden(self, batch: dict[str, torch.Tensor], event_mask: torch.Tensor | None = None):
        """Per-position hidden states (B, T, D); position t sees events <= t only."""
        x = self.embed(batch, event_mask)
        for block in self.blocks:
            x = block(x)
        return self.ln_f(x)

    def states(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Per-position pooling inputs (B, T, 2D): [h_t, mean of the last pool_window h's]."""
        P = self.config.pool_window
        hm = h * mask.unsqueeze(-1).to(h.dtype)
        csum = F.pad(hm.cumsum(1), (0, 0, 1, 0))  # (B, T + 1, D)
        T = h.shape[1]
        idx = torch.arange(1, T + 1, device=h.device)
        lo = (idx - P).clamp(min=0)
        window_sum = csum[:, idx] - csum[:, lo]  # (B, T, D)
        count = (idx - lo).to(h.dtype).view(1, T, 1)
        return torch.cat([h, window_sum / count], dim=-1)

    def pool(self, states: torch.Tensor, case_gap: torch.Tensor, empty: torch.Tensor):
        """Vectors (N, out_dim) from read-off states (N, 2D), case gaps (N,), empty flags (N,)."""
        states = torch.where(empty.unsqueeze(-1), torch.zeros_like(states), states)
        return self.head(torch.cat([states, case_gap.unsqueeze(-1)], dim=-1))

    def forward(
        self,
        batch: dict[str, torch.Tensor],
        *,
        case_gap: torch.Tensor | None = None,
        event_mask: torch.Tensor | None = None,
        targets: dict[str, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Encode right-padded sequences.

        Returns
        -------
        output : (B, out_dim) vector read at each sequence's last real event (empty sequences
            give the vector of an empty history).
        loss : masked event modeling loss over ``event_mask`` positions when ``targets``
            (``cat`` (B, T, C) and ``num_bucket`` (B, T, M) of the unmasked events) are given.
        """
        output, h = self.encode(batch, case_gap=case_gap, event_mask=event_mask)
        loss = None
        if targets is not None and event_mask is not None:
            loss = self.masked_event_loss(h, targets, event_mask & batch["mask"])
        return output, loss

    def encode(
        self,
        batch: dict[str, torch.Tensor],
        *,
        case_gap: torch.Tensor | None = None,
        event_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The pooled vector (B, out_dim) at each sequence's last real event, and the hidden
        states (B, T, D)."""
        mask = batch["mask"]
        B = mask.shape[0]
        h = self.hidden(batch, event_mask)  # (B, T, D)
        states = self.states(h, mask)  # (B, T, 2D)
        lengths = mask.sum(1)
        last = (lengths - 1).clamp(min=0)
        read = states[torch.arange(B), last]  # (B, 2D)
        if case_gap is None:
            case_gap = torch.zeros(B, dtype=h.dtype, device=h.device)
        return self.pool(read, case_gap, lengths == 0), h

    def case_vectors(
        self, batch: dict[str, torch.Tensor], *, case_gap: torch.Tensor | None = None
    ) -> torch.Tensor:
        """A case's whole embedding (B, embedding_dim): the pooled vector read at the sequence's
        last real event, then (with the next-event head) that event's per-field surprise."""
        output, h = self.encode(batch, case_gap=case_gap)
        if not self.config.next_event:
            return output
        lengths = batch["mask"].sum(1)
        last = (lengths - 1).clamp(min=0)
        surprise = self.next_event_surprise(h, batch, (torch.arange(len(last)), last))
        return torch.cat([output, self.own_event_surprise(surprise, case_gap, lengths == 0)], -1)

    def own_event_surprise(
        self, surprise: torch.Tensor, case_gap: torch.Tensor | None, empty: torch.Tensor
    ) -> torch.Tensor:
        """Surprise columns of read-off events, zero where the event read is not the case's own
        (it lies before the case: gap > 0) or there is none."""
        keep = ~empty
        if case_gap is not None:
            keep = keep & (case_gap <= 0)
        return torch.where(keep.unsqueeze(-1), surprise, torch.zeros_like(surprise))

    def next_event_surprise(
        self, h: torch.Tensor, batch: dict[str, torch.Tensor], at: tuple[torch.Tensor, torch.Tensor]
    ) -> torch.Tensor:
        """The own-event columns of the N positions ``at``: (N, :attr:`AutoRiskConfig.n_surprise`),
        :meth:`next_event_nll` per field, then per numeric field the centered PIT (with ``pit``)
        and the z-score under the Gaussian head (with ``num_regression``)."""
        z = self._next_in(h, batch, at)
        return torch.cat(self._next_event_scores(z, batch, at, own_columns=True), dim=-1)

    def next_event_nll(
        self,
        h: torch.Tensor,
        batch: dict[str, torch.Tensor],
        at: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Per-field surprise: -log p(event t's field | h_{t-1}, t's timing).

        ``h`` are the hidden states of ``batch``; position 0 reads a zero state (a first event,
        or the first position of a cut window). A missing field gives 0. Position t uses only
        events before t and t's own timing, so the causal guarantee holds.

        Returns (B, T, n_fields), or (N, n_fields) for the N positions ``at`` (batch rows,
        positions): the heads are costly (thousands of terminal buckets), so only the positions
        needed are scored.
        """
        return self._next_event_scores(self._next_in(h, batch, at), batch, at, own_columns=False)[0]

    def _next_in(self, h, batch, at) -> torch.Tensor:
        """The next-event heads' input for the positions ``at`` (all when None): each position
        reads the previous one's hidden state and its own timing."""
        prev = F.pad(h[:, :-1], (0, 0, 1, 0))
        z = self.next_in(prev + self.embed.timing(batch))
        return z if at is None else z[at]

    def _next_event_scores(self, z, batch, at, *, own_columns: bool) -> list[torch.Tensor]:
        """[NLL (..., n_fields)] from the heads' input ``z`` at ``at`` and, with
        ``own_columns``, the config's extra columns: the centered PIT (``pit``) and the z-score
        (``num_regression``) per numeric field; 0 where the field is missing."""
        targets = torch.cat([batch["cat"], batch["num_bucket"]], dim=-1)  # (B, T, n_fields)
        if at is not None:
            targets = targets[at]
        n_cat = len(self.config.cat_cardinalities)
        nlls, pits = [], []
        for j, head in enumerate(self.next_heads):
            logp = F.log_softmax(head(z), dim=-1)
            y = targets[..., j]
            idx = y.clamp(min=0).unsqueeze(-1)
            nll = -logp.gather(-1, idx).squeeze(-1)
            nlls.append(torch.where(y > 0, nll, torch.zeros_like(nll)))
            if own_columns and self.config.pit and j >= n_cat:
                # Buckets 1..num_buckets are ordered (0 is "missing"): P(below) + P(same) / 2.
                p = logp[..., 1:].exp()
                p = p / p.sum(-1, keepdim=True).clamp(min=1e-12)
                below = torch.cumsum(p, -1) - p
                own = (idx - 1).clamp(min=0)
                mid = below.gather(-1, own).squeeze(-1) + p.gather(-1, own).squeeze(-1) / 2
                pits.append(torch.where(y > 0, mid - 0.5, torch.zeros_like(mid)))
        out = [torch.stack(nlls, dim=-1)]
        if pits:
            out.append(torch.stack(pits, dim=-1))
        if own_columns and self.config.num_regression and self.config.n_numeric:
            zscore, _ = self._next_num_gaussian(z, batch, at)
            out.append(zscore)
        return out

    def _next_num_gaussian(self, z, batch, at) -> tuple[torch.Tensor, torch.Tensor]:
        """The own value's z-score under the Gaussian head (0 where missing), and its NLL."""
        mu, log_sigma = self.next_num(z).chunk(2, dim=-1)
        log_sigma = log_sigma.clamp(-5.0, 5.0)
        x, present = batch["num"], batch["num_bucket"] > 0
        if at is not None:
            x, present = x[at], present[at]
        zscore = (x - mu) / log_sigma.exp()
        nll = 0.5 * zscore**2 + log_sigma
        zero = torch.zeros_like(zscore)
        return torch.where(present, zscore, zero), torch.where(present, nll, zero)

    def next_event_loss(
        self, h: torch.Tensor, batch: dict[str, torch.Tensor], where: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Mean next-event surprise over the real events at ``where`` (B, T; default: every
        position after each window's first)."""
        mask = batch["mask"].clone()
        mask[:, 0] = False
        if where is not None:
            mask &= where
        at = torch.nonzero(mask, as_tuple=True)
        if len(at[0]) == 0:
            return h.sum() * 0.0
        z = self._next_in(h, batch, at)
        nll = self._next_event_scores(z, batch, at, own_columns=False)[0]
        targets = torch.cat([batch["cat"], batch["num_bucket"]], dim=-1)[at]
        present = targets > 0
        if not present.any():
            return h.sum() * 0.0
        loss = nll[present].mean()
        if self.config.num_regression and self.config.n_numeric:
            _, gaussian = self._next_num_gaussian(z, batch, at)
            numeric = present[:, len(self.config.cat_cardinalities) :]
            if numeric.any():
                loss = loss + gaussian[numeric].mean()
        return loss

    def masked_event_loss(self, h: torch.Tensor, targets: dict[str, torch.Tensor], where):
        """Mean cross-entropy of the hidden fields at ``where`` (B, T) positions."""
        hm = h[where]  # (K, D)
        losses = []
        for j, head in enumerate(self.cat_heads):
            y = targets["cat"][where][:, j]
            if (y > 0).any():
                losses.append(F.cross_entropy(head(hm), y, ignore_index=0))
        for j, head in enumerate(self.num_heads):
            y = targets["num_bucket"][where][:, j]
            if (y > 0).any():
                losses.append(F.cross_entropy(head(hm), y, ignore_index=0))
        if not losses:
            return h.sum() * 0.0
        return torch.stack(losses).mean()


def gated_conv_parameter_counts(d_model: int = 256, kernel_size: int = 5) -> dict[str, int]:
    """Parameter counts (weights + biases) of the conv layers the seed compares at D, K."""

    def count(module: nn.Module) -> int:
        return sum(p.numel() for p in module.parameters())

    d, k = d_model, kernel_size
    separable = nn.Sequential(nn.Conv1d(d, d, k, groups=d), nn.Conv1d(d, d, 1))
    return {
        "d_model": d,
        "kernel_size": k,
        "plain_conv": count(nn.Conv1d(d, d, k)),
        "depthwise_separable_conv": count(separable),
        "gated_plain_conv": count(nn.Conv1d(d, 2 * d, k)),
        "gated_depthwise_separable_conv": count(GatedSeparableConv(d, k)),
    }
