"""One plan's speed: decode and prefill tokens/s, time to first token, aggregate throughput at a
batch size, and the latency spread — composed from `traffic`, `devices`, `decode`, `prefill`,
`batching` and `spread`."""

from dataclasses import dataclass, field
from functools import cached_property

from moeplan.arch.spec import ModelSpec
from moeplan.engines.llamacpp import CPU, MemoryPlan
from moeplan.hardware.spec import Node
from moeplan.memory.kv import CacheConfig
from moeplan.perf.calibration import CALIBRATION, Calibration
from moeplan.perf.decode import Disk, StepTime, step_time
from moeplan.perf.devices import Rates, host_link_bytes_s, rates_for
from moeplan.perf.prefill import PrefillTime, prefill_time
from moeplan.perf.spread import Spread, spread
from moeplan.perf.traffic import TokenWork, token_work

TYPICAL_FILL = 4096  # tokens in the KV cache when decode speed is quoted
PROMPT_TOKENS = 4096  # the prompt length time-to-first-token is quoted for


@dataclass
class Speed:
    """The speed model of one plan. Cheap numbers are computed at once; the simulation on demand."""

    work: TokenWork
    rates: dict[str, Rates]
    link_bytes_s: float
    fill: int
    n_ubatch: int
    disk: Disk | None = None
    cal: Calibration = field(default=CALIBRATION)

    @cached_property
    def step(self) -> StepTime:
        return step_time(self.work, self.rates, self.fill, 1, self.disk, self.cal)

    @property
    def seconds_per_token(self) -> float:
        return self.step.seconds

    @property
    def decode_tok_s(self) -> float:
        return 1.0 / self.step.seconds if self.step.seconds else 0.0

    @property
    def bound_by(self) -> str:
        return self.step.bound_by

    def prefill(self, prompt_tokens: int = PROMPT_TOKENS, depth: int = 0) -> PrefillTime:
        return prefill_time(self.work, self.rates, prompt_tokens, self.n_ubatch, self.link_bytes_s, depth)

    def ttft_s(self, prompt_tokens: int = PROMPT_TOKENS) -> float:
        """Time to first token: the prompt's prefill, then one decode step."""
        first = step_time(self.work, self.rates, prompt_tokens, 1, self.disk, self.cal)
        return self.prefill(prompt_tokens).seconds + first.seconds

    def throughput(self, batch: int) -> float:
        """Aggregate decode tokens/s with `batch` sequences in flight (continuous batching)."""
        s = step_time(self.work, self.rates, self.fill, batch, self.disk, self.cal)
        return batch / s.seconds if s.seconds else 0.0

    def decode_at(self, fill: int, batch: int = 1) -> float:
        s = step_time(self.work, self.rates, fill, batch, self.disk, self.cal)
        return batch / s.seconds if s.seconds else 0.0

    def spread(self, batch: int = 1) -> Spread:
        mean = (
            self.step
            if batch == 1
            else step_time(self.work, self.rates, self.fill, batch, self.disk, self.cal)
        )
        bw = {name: r.bandwidth for name, r in self.rates.items()}
        return spread(self.work, mean, bw, batch, self.disk)

    @cached_property
    def latency(self) -> Spread:
        return self.spread(1)


def speed(
    spec: ModelSpec,
    mem: MemoryPlan,
    cache: CacheConfig,
    node: Node,
    *,
    fill: int | None = None,
    threads: int | None = None,
    disk_miss_fraction: float = 0.0,
    cal: Calibration = CALIBRATION,
) -> Speed:
    """The speed model of one memory plan on `node`. `fill`: tokens in the KV cache when decode is
    quoted (default: TYPICAL_FILL, at most the context). `threads`: CPU threads (llama.cpp's default
    is the physical core count). `disk_miss_fraction`: share of the CPU's expert bytes that are
    not resident in RAM (disk-mmap plans)."""
    work = token_work(spec, mem, cache)
    rates = rates_for([d.device for d in mem.devices if not d.device.startswith(CPU)], node, threads, cal)
    ctx = mem.n_ctx or cache.n_ctx or TYPICAL_FILL
    disk = None
    if disk_miss_fraction > 0:
        disk = Disk(min(disk_miss_fraction, 1.0), node.host.disk_read_bytes_s * cal.disk_eff)
    return Speed(
        work,
        rates,
        host_link_bytes_s(node, cal),
        min(TYPICAL_FILL, ctx) if fill is None else fill,
        mem.n_ubatch or cache.n_ubatch,
        disk,
        cal,
    )
