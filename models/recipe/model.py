"""The bundled models' architecture: plain llama (RMSNorm, RoPE, GQA attention, SwiGLU, tied embeddings).

Written to run unchanged on Debian's torch 1.13 (CPU, no scaled_dot_product_attention) and on a recent torch with
CUDA. Conventions follow llama.cpp's `llama` architecture so the GGUF export needs no permutation:
- RoPE in llama.cpp's "normal" layout: adjacent pairs (x[2i], x[2i+1]) rotate by pos * base^(-2i/head_dim);
- query head h reads KV head h // (n_heads / n_kv_heads);
- attention scale 1/sqrt(head_dim); RMSNorm x * rsqrt(mean(x^2) + eps) * w.
"""
import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class Config:
    vocab_size: int = 2048
    d_model: int = 384
    n_layers: int = 6
    n_heads: int = 6
    n_kv_heads: int = 2
    head_dim: int = 64
    ffn_dim: int = 1024
    rope_base: float = 1e8
    norm_eps: float = 1e-5
    context_length: int = 4096

    def to_dict(self):
        return asdict(self)


PRESETS = {
    # ~10.3M parameters, 20.6 MB as F16.
    "target": Config(d_model=384, n_layers=6, n_heads=6, n_kv_heads=2, ffn_dim=1024),
    # ~1.3M parameters; about 11% of the target's per-token compute.
    "draft": Config(d_model=192, n_layers=3, n_heads=3, n_kv_heads=1, ffn_dim=512),
    # Experimental, not shipped: the draft grown by a fourth block for a copy-pointer head (a session-2 CPU
    # experiment, models/README.md "What did not work"); 1.97M matrix parameters, 19% of the target's per token.
    "draft4": Config(d_model=192, n_layers=4, n_heads=3, n_kv_heads=1, ffn_dim=512),
    # Second-generation draft (trained with a planted copy circuit, plant.py): 2 KV heads so the circuit owns one
    # KV head per layer while the other stays free; 2 layers keep both matrix and attention compute under a quarter
    # of the target's (1.57M + 0.52M tied output = 2.1M matrix parameters, 20%; 8 vs 36 head-layers, 22%).
    "draft2": Config(d_model=256, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=768),
    # Proposed third-generation draft (not trained yet; needs a GPU phase, models/README.md): three layers so a FIM
    # lookup can hop first (at <|fim_middle|>, fetch the name written before <|fim_suffix|>) and match after; the
    # 2-layer draft2 cannot (diagnose_retrieval.py: its lookup head puts 0.15 of its attention on the definitions
    # from <|fim_middle|>, 0.73 from a plain usage line). About draft2's per-token compute at 4K (flops_per_token:
    # 20.0% of the target's, draft2 21.3%): 1.18M + 0.39M tied output = 1.57M matrix parameters, 9 vs 36 head-layers.
    "draft3": Config(d_model=192, n_layers=3, n_heads=3, n_kv_heads=1, ffn_dim=512),
    # For smoke tests of the recipe itself.
    "tiny": Config(d_model=128, n_layers=2, n_heads=2, n_kv_heads=1, ffn_dim=256),
}


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).type_as(x) * self.weight


def rope_tables(cfg: Config, positions: torch.Tensor):
    inv = cfg.rope_base ** (-torch.arange(0, cfg.head_dim, 2, dtype=torch.float64, device=positions.device) / cfg.head_dim)
    ang = positions.double()[:, None] * inv[None, :]
    return torch.cos(ang).float(), torch.sin(ang).float()


def apply_rope(x, cos, sin):
    # x: [B, H, T, D]; rotate adjacent pairs.
    x2 = x.float().reshape(*x.shape[:-1], -1, 2)
    x0, x1 = x2[..., 0], x2[..., 1]
    out = torch.stack((x0 * cos - x1 * sin, x0 * sin + x1 * cos), dim=-1)
    return out.reshape(x.shape).type_as(x)


class Attention(nn.Module):
    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        self.wq = nn.Linear(cfg.d_model, cfg.n_heads * cfg.head_dim, bias=False)
        self.wk = nn.Linear(cfg.d_model, cfg.n_kv_heads * cfg.head_dim, bias=False)
        self.wv = nn.Linear(cfg.d_model, cfg.n_kv_heads * cfg.head_dim, bias=False)
        self.wo = nn.Linear(cfg.n_heads * cfg.head_dim, cfg.d_model, bias=False)

    def project(self, x, cos, sin):
        """Queries, keys and values [B, n_heads, T, head_dim] of x: RoPE applied, each KV head repeated for the
        query heads of its group. Shared with the recipe's tools that inspect attention (plant.py,
        diagnose_retrieval.py), so they see exactly what the model computes."""
        B, T, _ = x.shape
        c = self.cfg
        q = self.wq(x).view(B, T, c.n_heads, c.head_dim).transpose(1, 2)
        k = self.wk(x).view(B, T, c.n_kv_heads, c.head_dim).transpose(1, 2)
        v = self.wv(x).view(B, T, c.n_kv_heads, c.head_dim).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        group = c.n_heads // c.n_kv_heads
        return q, k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)

    def forward(self, x, cos, sin):
        B, T, _ = x.shape
        c = self.cfg
        q, k, v = self.project(x, cos, sin)
        if hasattr(F, "scaled_dot_product_attention"):
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            att = (q @ k.transpose(-2, -1)) / math.sqrt(c.head_dim)
            mask = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)
            att = att.masked_fill(mask, float("-inf")).softmax(-1)
            y = att @ v
        return self.wo(y.transpose(1, 2).reshape(B, T, -1))


class FeedForward(nn.Module):
    def __init__(self, cfg: Config):
        super().__init__()
        self.gate = nn.Linear(cfg.d_model, cfg.ffn_dim, bias=False)
        self.up = nn.Linear(cfg.d_model, cfg.ffn_dim, bias=False)
        self.down = nn.Linear(cfg.ffn_dim, cfg.d_model, bias=False)

    def forward(self, x):
        return self.down(F.silu(self.gate(x)) * self.up(x))


class Block(nn.Module):
    def __init__(self, cfg: Config):
        super().__init__()
        self.attn_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.attn = Attention(cfg)
        self.ffn_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.ffn = FeedForward(cfg)

    def forward(self, x, cos, sin):
        x = x + self.attn(self.attn_norm(x), cos, sin)
        return x + self.ffn(self.ffn_norm(x))


class Transformer(nn.Module):
    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.apply(self._init)
        for b in self.blocks:
            nn.init.normal_(b.attn.wo.weight, std=0.02 / math.sqrt(2 * cfg.n_layers))
            nn.init.normal_(b.ffn.down.weight, std=0.02 / math.sqrt(2 * cfg.n_layers))

    @staticmethod
    def _init(m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)

    def forward(self, idx, start_pos: int = 0):
        T = idx.shape[1]
        cos, sin = rope_tables(self.cfg, torch.arange(start_pos, start_pos + T, device=idx.device))
        x = self.embed(idx)
        for b in self.blocks:
            x = b(x, cos, sin)
        # Tied output: logits from the embedding matrix (llama.cpp uses token_embd when output.weight is absent).
        return self.norm(x) @ self.embed.weight.t()

    def n_params(self):
        return sum(p.numel() for p in self.parameters())

    def flops_per_token(self, seq_len: int):
        c = self.cfg
        dense = 2 * (self.n_params())
        attn = 2 * 2 * c.n_layers * seq_len * c.n_heads * c.head_dim // 2  # causal: half the scores on average
        return dense + attn
