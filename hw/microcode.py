"""The core's microcode: the chunk program (golden/program.py) compiled into array instructions.

One instruction per product of the program (and one for the solve), each with everything the
scheduler needs to expand it into MAC-array tiles and everything the epilogue needs to turn the
drained sums into the rounded words the fixed-point model writes. The scheduler (hw/scheduler.py)
elaborates these instructions into hardware loops; the cycle model (sim/cycle_model.py) walks
:func:`tiles` over the same instructions. Nothing else decides the order of work.

The program's row scalings ``Kb = beta (rows) K`` and ``Vb = beta (rows) V`` are computed by
the loader as the words arrive (beta is the first word of a head's token); ``A = Kb K^T`` is an
ordinary product of them, so the epilogue only adds and rounds.

Buffers (ChunkBuffer instances, lanes = array columns): the loader fills ``Q``, ``K``, ``Kt`` (a
second copy of K for B-side reads while ``K`` feeds the A side), ``Kb``, ``Vb`` and ``beta`` for
every head of a chunk, in one of two halves (the next chunk loads while this one computes);
``A``, ``T``, ``W``, ``U``, ``QK``, ``Vn`` hold the intermediates (one region per head: each
instruction runs for every head before the next starts); ``O`` (two halves) is
read by the output streamer; ``S`` is the state SRAM.

Tiles: an instruction's output (``rows_dim`` x ``cols_dim``) is cut into R x C tiles (i0, j0) in
row-major order; each term of the instruction is one array tile of k steps (two per k for a term
that reads the state in two passes, ``state_passes = 2``: its low half, then its high half).
Steps skipped:

* a term whose A operand is lower triangular (``T``, ``QK``) stops at k = i0 + R;
* a masked (lower or strict lower) product skips the tiles with j0 >= i0 + R (all zero; no reader
  ever reads them);
* the solve computes row i of T from rows k < i, tile by tile (j0 <= i), with k from j0 (T is
  lower triangular), and waits for row i to be written before row i + 1 starts. It runs on the
  solver's own 1 x C row (hw/solver.py) beside the array; the array's instructions that read
  ``T`` wait, head by head, for the solver's rows (``reads_t``).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..golden.program import Product, Scale, Solve, chunk_program
from .mac_array import LOW_BITS, MULT_WIDTH, operand_widths

__all__ = [
    "CHUNK_INPUTS",
    "Fetch",
    "Instr",
    "Step",
    "check_core_config",
    "core_program",
    "dim_value",
    "tiles",
]

# buffers the loader fills for every head of a chunk (two halves); the others hold one head
CHUNK_INPUTS = ("Q", "K", "Kt", "Kb", "Vb")
# format field of each buffer's words
BUFFER_FORMATS = {
    "Q": "fmt_qk",
    "K": "fmt_qk",
    "Kt": "fmt_qk",
    "Kb": "fmt_qk",
    "Vb": "fmt_v",
    "A": "fmt_a",
    "T": "fmt_t",
    "Ts": "fmt_t",
    "W": "fmt_w",
    "U": "fmt_u",
    "QK": "fmt_attn",
    "Vn": "fmt_vnew",
    "O": "fmt_o",
    "S": "fmt_state",
}
# the triangular matrices (zero above the diagonal)
LOWER = ("T", "QK", "A")


@dataclass(frozen=True)
class Fetch:
    """Where one operand of a step is read: ``buf`` in ``mode``.

    Modes: ``col`` (lanes = rows i0.. of column k), ``row`` (lanes = columns i0.. or j0.. of row
    k; the solver reads lane 0 of a ``col`` read at its row), ``sram`` (state row k, tile j0).
    """

    buf: str
    mode: str


@dataclass(frozen=True)
class Step:
    """One term of an instruction: ``sign * a @ b`` over ``k_dim`` (m, d_k or d_v)."""

    a: Fetch
    b: Fetch
    sign: int
    k_dim: str
    a_lower: bool  # stop at k = i0 + R
    frac: int  # fractional bits of the exact product
    passes: int = 1  # array steps per k: 2 for the state's low, then high half (state_passes)


@dataclass(frozen=True)
class Instr:
    name: str  # the program destination
    solve: bool
    rows_dim: str  # m | dk
    cols_dim: str  # m | dk | dv
    steps: tuple[Step, ...]
    mask: str  # full | lower | strict_lower
    add: str | None  # epilogue addend buffer (U, Vb or S)
    add_frac: int
    top_frac: int  # fractional bits of the exact sum
    fmt: str  # format field of the rounded result
    dest: str
    wait: bool  # wait for every earlier instruction's writes before the first step

    @property
    def skip_upper(self) -> bool:
        return self.mask != "full"

    @property
    def reads_t(self) -> bool:
        """Reads the solver's result (waits for it head by head)."""
        return any(s.a.buf == "T" or s.b.buf == "T" for s in self.steps) and not self.solve


def check_core_config(cfg) -> None:
    """Raise a ``ValueError`` naming the field if the core hardware cannot be built for ``cfg``."""
    if cfg.gated:
        raise ValueError(
            "gated must be False for the core hardware: the scheduler does not run the Decay "
            "and element-wise Scale operations yet (the golden and fixed-point models do)"
        )
    R, C = cfg.array_rows, cfg.array_cols
    if C & (C - 1) or R & (R - 1):
        raise ValueError(
            f"array_rows ({R}) and array_cols ({C}) must be powers of two for the core"
        )
    if R > C:
        raise ValueError(f"array_rows ({R}) must be <= array_cols ({C}) for the core")
    if cfg.state_passes == 2:
        widest = LOW_BITS + MULT_WIDTH  # the high half fits one multiplier too
        if not MULT_WIDTH < cfg.fmt_state.width <= widest:
            raise ValueError(
                f"state_passes (2) must be 1 for a fmt_state of {cfg.fmt_state.width} bits: two "
                f"passes split state words of {MULT_WIDTH + 1} to {widest} bits"
            )
        b_width = operand_widths(cfg)[1]
        if b_width > MULT_WIDTH:
            raise ValueError(
                f"state_passes (2) must be 1 when a B operand other than the state is wider than "
                f"{MULT_WIDTH} bits ({b_width}): the array has one multiplier each"
            )
    for field in ("d_k", "d_v", "chunk_size"):
        if getattr(cfg, field) % C:
            raise ValueError(
                f"{field} ({getattr(cfg, field)}) must be a multiple of array_cols ({C}) "
                "for the core"
            )


def _fetch(name: str, side: str, transposed: bool) -> Fetch:
    if name == "S":
        if side != "b" or transposed:
            raise ValueError("the state is only read as a B operand")
        return Fetch("S", "sram")
    if side == "a":
        return Fetch(name, "row" if transposed else "col")
    return Fetch("Kt" if name == "K" else name, "col" if transposed else "row")


def core_program(cfg, mode: str) -> tuple[Instr, ...]:
    """The instructions one head runs per chunk (``mode="chunk"``) or token (``"recurrent"``)."""
    check_core_config(cfg)
    if mode not in ("chunk", "recurrent"):
        raise ValueError(f"mode must be 'chunk' or 'recurrent', not {mode!r}")
    decode = mode == "recurrent"
    program = chunk_program(1 if decode else cfg.chunk_size, False, decode)
    fmts = program.formats()
    frac = {name: getattr(cfg, field).frac_bits for name, field in fmts.items()}
    # (rows, cols) of every value, in the symbols m, dk, dv
    dims = {n: ("m", "dk") for n in ("Q", "K", "Kb", "W")}
    dims |= {n: ("m", "dv") for n in ("V", "Vb", "U", "Vn", "O")}
    dims |= {n: ("m", "m") for n in ("A", "T", "QK")}
    dims["S"] = ("dk", "dv")

    scales = {op.dest: op for op in program.ops if isinstance(op, Scale)}
    for dest, op in scales.items():
        if op.how != "rows" or op.factor != "beta" or dest not in ("Kb", "Vb"):
            raise ValueError(f"the core cannot run the scale {dest} = {op.src} * {op.factor}")
    instrs = []
    for op in program.ops:
        if isinstance(op, Product):
            steps = []
            for t in op.terms:
                a_dims = dims[t.a][::-1] if t.ta else dims[t.a]
                steps.append(
                    Step(
                        a=_fetch(t.a, "a", t.ta),
                        b=_fetch(t.b, "b", t.tb),
                        sign=t.sign,
                        k_dim=a_dims[1],
                        a_lower=t.a in LOWER and not t.ta,
                        frac=frac[t.a] + frac[t.b],
                        passes=cfg.state_passes if t.b == "S" else 1,
                    )
                )
            if op.add_scale:
                raise ValueError(f"the core cannot scale the addend of {op.dest}")
            if len(steps) > 2:
                raise ValueError(f"the core sums at most two terms ({op.dest})")
            add_frac = frac[op.add] if op.add else 0
            top = max([s.frac for s in steps] + [add_frac])
            instrs.append(
                Instr(
                    name=op.dest,
                    solve=False,
                    rows_dim=dims[op.dest][0],
                    cols_dim=dims[op.dest][1],
                    steps=tuple(steps),
                    mask=op.mask,
                    add=op.add,
                    add_frac=add_frac,
                    top_frac=top,
                    fmt=op.fmt,
                    dest=op.dest,
                    wait=False,
                )
            )
        elif isinstance(op, Solve):
            step = Step(
                a=Fetch(op.src, "col"),
                b=Fetch(op.dest, "row"),
                sign=-1,
                k_dim="m",
                a_lower=False,
                frac=frac[op.src] + frac[op.dest],
            )
            instrs.append(
                Instr(
                    name=op.dest,
                    solve=True,
                    rows_dim="m",
                    cols_dim="m",
                    steps=(step,),
                    mask="lower",
                    add=None,
                    add_frac=0,
                    top_frac=step.frac,
                    fmt=op.fmt,
                    dest=op.dest,
                    wait=False,
                )
            )
        elif isinstance(op, Scale):
            continue  # the loader's (Kb, Vb)
        else:
            raise ValueError(f"the core cannot run {type(op).__name__} operations")
    # Q K^T needs neither T nor W: it runs while the solver (hw/solver.py) computes T
    qk = next((n for n, i in enumerate(instrs) if i.name == "QK"), None)
    solve = next((n for n, i in enumerate(instrs) if i.solve), None)
    if qk is not None and solve is not None:
        instrs.insert(solve + 1, instrs.pop(qk))
    return tuple(_with_waits(instrs))


def op_counter_names(cfg) -> tuple[str, ...]:
    """Names of the core's per-instruction cycle counters, in register order (OP_CYCLES + n)."""
    chunk, decode = core_program(cfg, "chunk"), core_program(cfg, "recurrent")
    return tuple(
        [i.name for i in chunk if not i.solve]
        + [i.name for i in chunk if i.solve]
        + ["dec_" + i.name for i in decode]
    )


def _reads(ins: Instr) -> set[str]:
    out = {s.a.buf for s in ins.steps} | {s.b.buf for s in ins.steps}
    return out | ({ins.add} if ins.add else set())


def _with_waits(instrs: list[Instr]) -> list[Instr]:
    """Set ``wait`` where an instruction reads what an unfinished one writes (or shares a port).

    Each instruction runs for every head before the next starts; a chunk starts when the last
    one's writes have landed. The solve always waits (it reads the A rows just written).
    """
    from dataclasses import replace

    pending_writes: set[str] = set()
    pending_adds: set[str] = set()
    out = []
    for ins in instrs:
        if ins.solve:  # the solver runs beside the array; W and U wait for its rows per head
            out.append(replace(ins, wait=True))
            continue
        fetched = {s.a.buf for s in ins.steps} | {s.b.buf for s in ins.steps}
        hazard = bool(
            ins.solve
            or _reads(ins) & pending_writes
            or fetched & pending_adds
            or (ins.add and ins.add in pending_adds)
        )
        if hazard:
            pending_writes, pending_adds = set(), set()
        pending_writes.add(ins.dest)
        if ins.add:
            pending_adds.add(ins.add)
        out.append(replace(ins, wait=hazard))
    return out


def dim_value(cfg, dim: str, m):
    """The size a dimension symbol stands for (``m`` may be a signal in the hardware)."""
    return {"m": m, "dk": cfg.d_k, "dv": cfg.d_v}[dim]


def tiles(cfg, ins: Instr, m: int, heads: int = 1):
    """The array tiles of ``ins`` on a chunk of ``m`` rows and ``heads`` heads, in issue order.

    Yields ``(head, i0, j0, row, term, k_lo, k_hi)``: ``row`` is the solve's row (else None).
    Both run head by head; after a solve row's last tile the solver waits for its writes.
    """
    R, C = cfg.array_rows, cfg.array_cols
    rows, cols = dim_value(cfg, ins.rows_dim, m), dim_value(cfg, ins.cols_dim, m)
    if ins.solve:
        for h in range(heads):
            for i in range(m):
                for j0 in range(0, i + 1, C):
                    yield h, i - i % R, j0, i, 0, j0, max(i, j0 + 1)
        return
    for h in range(heads):
        for i0 in range(0, rows, R):
            for j0 in range(0, cols, C):
                if ins.skip_upper and j0 >= i0 + R:
                    continue
                for t, step in enumerate(ins.steps):
                    n = dim_value(cfg, step.k_dim, m)
                    hi = min(i0 + R, n) if step.a_lower else n
                    yield h, i0, j0, None, t, 0, hi
