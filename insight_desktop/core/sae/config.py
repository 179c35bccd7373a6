"""SAE configuration (docs/method.md §2): sizes of the nested Matryoshka groups, k, loss constants."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

REFERENCE_GROUP_FRACTIONS: tuple[float, ...] = (0.008, 0.03, 0.06, 0.12, 0.24, 0.542)


def group_sizes_from_fractions(n_concepts: int,
                               fractions: tuple[float, ...] = REFERENCE_GROUP_FRACTIONS) -> tuple[int, ...]:
    """``int(f·m)`` per group, the remainder to the last group (docs/method.md §2).

    >>> group_sizes_from_fractions(8192)
    (65, 245, 491, 983, 1966, 4442)
    """
    if not fractions or any(f <= 0 for f in fractions):
        raise ValueError("group fractions must be positive")
    sizes = [int(f * n_concepts) for f in fractions[:-1]]
    sizes.append(n_concepts - sum(sizes))
    if any(s <= 0 for s in sizes):
        raise ValueError(f"{n_concepts} concepts are too few for {len(fractions)} groups: sizes {sizes}")
    return tuple(sizes)


@dataclass(frozen=True)
class SAEConfig:
    """Architecture of a Matryoshka BatchTopK SAE. Reference: d 512, m 8192, k 12."""

    d_in: int
    n_concepts: int
    k: int
    group_sizes: tuple[int, ...]
    architecture: str = "matryoshka-batchtopk"

    def __post_init__(self) -> None:
        object.__setattr__(self, "group_sizes", tuple(int(g) for g in self.group_sizes))
        if sum(self.group_sizes) != self.n_concepts:
            raise ValueError(f"group sizes {self.group_sizes} do not add up to {self.n_concepts} concepts")
        if not 0 < self.k <= self.n_concepts:
            raise ValueError(f"k must be in 1..{self.n_concepts}, got {self.k}")
        if self.d_in <= 0:
            raise ValueError("d_in must be positive")

    @classmethod
    def reference(cls, d_in: int = 512, expansion: int = 16, k: int = 12,
                  fractions: tuple[float, ...] = REFERENCE_GROUP_FRACTIONS) -> "SAEConfig":
        m = d_in * expansion
        return cls(d_in=d_in, n_concepts=m, k=k, group_sizes=group_sizes_from_fractions(m, fractions))

    @property
    def group_ends(self) -> tuple[int, ...]:
        """Prefix ends, e.g. (65, 310, 801, 1784, 3750, 8192) for the reference sizes."""
        ends, total = [], 0
        for g in self.group_sizes:
            total += g
            ends.append(total)
        return tuple(ends)

    def level_of(self, concept: int) -> int:
        """1-based level (group) of a concept index; level 1 is the coarsest."""
        for level, end in enumerate(self.group_ends, start=1):
            if concept < end:
                return level
        raise IndexError(f"concept {concept} out of range 0..{self.n_concepts - 1}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["group_sizes"] = list(self.group_sizes)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SAEConfig":
        return cls(d_in=int(d["d_in"]), n_concepts=int(d["n_concepts"]), k=int(d["k"]),
                   group_sizes=tuple(d["group_sizes"]), architecture=d.get("architecture", "matryoshka-batchtopk"))


@dataclass(frozen=True)
class TrainConfig:
    """Training hyper-parameters (docs/method.md §2). Fields left at ``None`` are chosen per run by
    :func:`.schedule.plan_run`."""

    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    batch_tokens: int = 16384
    epochs: float = 1.0
    aux_alpha: float = 1 / 32
    #: a latent is dead once it has not fired for this many tokens (reference 10 M);
    #: None: scaled to the run's length (:mod:`.schedule`)
    dead_tokens: int | None = None
    #: the threshold EMA updates θ at the steps after this one (0-based, strictly greater, as the
    #: reference; reference 1000); None: scaled to the run's length (:mod:`.schedule`)
    threshold_start_step: int | None = None
    threshold_beta: float = 0.999
    grad_clip: float = 1.0
    seed: int = 0
    #: save a resumable checkpoint every this many steps (0: only at the end)
    checkpoint_every: int = 500
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        d = dict(d)
        if "betas" in d:
            d["betas"] = tuple(d["betas"])
        return cls(**d)
