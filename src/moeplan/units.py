"""The one unit policy of every face, CLI tables and web pages alike: memory in GiB, as GPU makers'
"GB" are binary (a 24 GB card holds 24 GiB); files in GB, decimal as the Hugging Face Hub shows them;
parameters in B (10^9) or M (10^6); times in ms under a second, else s. Each face states it
(`POLICY`) and formats with these functions."""

POLICY = "memory in GiB (2^30 bytes), files in GB (10^9 bytes)"


def gib(n: float | None, digits: int = 2) -> str:
    """Device and host memory, KV cache, buffers."""
    return "—" if n is None else f"{n / 2**30:,.{digits}f} GiB"


def gib_figure(n: float | None, digits: int = 2) -> str:
    """Memory as a bare number, for tables whose title states GiB once (many columns of "GiB" push
    a per-device table past a terminal's width)."""
    return "—" if n is None else f"{n / 2**30:,.{digits}f}"


def gib_change(n: float, digits: int = 2) -> str:
    """Memory a choice adds or frees, signed: '+0.71 GiB', '-0.06 GiB' (never '+-0.06')."""
    return f"{n / 2**30:+,.{digits}f} GiB"


def gb(n: float | None, digits: int = 2) -> str:
    """File and download sizes, and bytes read per token (the unit of GB/s bandwidth)."""
    return "—" if n is None else f"{n / 1e9:,.{digits}f} GB"


def billions(n: float | None) -> str:
    """A parameter count, to four significant figures from 1 B up (34.66 B, 671.9 B)."""
    if n is None:
        return "—"
    if n < 1e9:
        return f"{n / 1e6:,.0f} M"
    return f"{n / 1e9:,.2f} B" if n < 1e11 else f"{n / 1e9:,.1f} B"


def seconds(s: float | None) -> str:
    """A time (first token, per-token latency): milliseconds under a second, where "0.00 s" would
    hide a real value, else seconds."""
    if s is None:
        return "—"
    return f"{s * 1e3:,.1f} ms" if s < 1 else f"{s:,.2f} s"
