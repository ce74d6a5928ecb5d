"""Plans: the strategies considered for one request, in order, with reasons.

A `Plan` is a value: it can be printed, serialised to JSON or Graphviz dot,
compared in tests, and it is what a run follows. The first eligible strategy
runs first; if it fails, the next eligible one runs.
"""

from __future__ import annotations

from dataclasses import dataclass

from pieceworks.protocols import PieceworksError

__all__ = [
    "AllStrategiesFailed",
    "Attempt",
    "NoEligibleStrategy",
    "Plan",
    "StrategyChoice",
]


@dataclass(frozen=True)
class StrategyChoice:
    """One strategy of a plan: whether it can run here, and why (or why not).

    `enhancers` names the enhancers that change how it runs (``compress``,
    ``allocated-extents``, ``changed-blocks``); `needs` names the pieces
    that would make an ineligible strategy eligible.
    """

    name: str
    eligible: bool
    reason: str
    enhancers: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "eligible": self.eligible,
            "reason": self.reason,
            "enhancers": list(self.enhancers),
        }


@dataclass(frozen=True)
class Plan:
    """The ordered strategies for one operation on one backend."""

    operation: str
    backend: str
    strategies: tuple[StrategyChoice, ...]
    notes: tuple[str, ...] = ()

    @property
    def eligible(self) -> tuple[str, ...]:
        """Names of the eligible strategies, in the order they will be tried."""
        return tuple(s.name for s in self.strategies if s.eligible)

    @property
    def chosen(self) -> str | None:
        """The strategy that runs first, or None when none is eligible."""
        return next(iter(self.eligible), None)

    def require_eligible(self) -> Plan:
        """Return self, or raise `NoEligibleStrategy` if nothing can run."""
        if not self.eligible:
            raise NoEligibleStrategy(self)
        return self

    def to_dict(self) -> dict[str, object]:
        """The JSON form: ``{"operation", "backend", "chosen", "strategies", "notes"}``."""
        return {
            "operation": self.operation,
            "backend": self.backend,
            "chosen": self.chosen,
            "strategies": [s.to_dict() for s in self.strategies],
            "notes": list(self.notes),
        }

    def format_text(self) -> str:
        """A human-readable plan, one strategy per line, the chosen one marked."""
        lines = [f"{self.operation} plan for backend '{self.backend}':"]
        for s in self.strategies:
            mark = "->" if s.name == self.chosen else ("ok" if s.eligible else "--")
            extra = f" [{', '.join(s.enhancers)}]" if s.enhancers and s.eligible else ""
            lines.append(f"  {mark} {s.name}: {s.reason}{extra}")
        lines.extend(f"  note: {n}" for n in self.notes)
        return "\n".join(lines)

    def to_dot(self) -> str:
        """Graphviz dot of the plan: strategies in order, fallbacks as edges."""
        out = [
            f'digraph "{self.operation}" {{',
            "  rankdir=LR;",
            '  node [shape=box, fontname="Helvetica"];',
            f'  request [shape=oval, label="{self.operation}\\n{self.backend}"];',
        ]
        prev = "request"
        for s in self.strategies:
            style = "solid" if s.eligible else "dashed"
            color = "black" if s.eligible else "gray"
            label = f"{s.name}\\n{_dot_escape(s.reason)}"
            out.append(f'  "{s.name}" [label="{label}", style={style}, color={color}];')
            if s.eligible:
                edge = "first" if prev == "request" else "on failure"
                out.append(f'  "{prev}" -> "{s.name}" [label="{edge}"];')
                prev = s.name
        out.append("}")
        return "\n".join(out)


def _dot_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


@dataclass(frozen=True)
class Attempt:
    """A strategy that ran and failed, with its error message."""

    strategy: str
    error: str

    def to_dict(self) -> dict[str, str]:
        return {"strategy": self.strategy, "error": self.error}

    @classmethod
    def from_rows(cls, rows: list[dict[str, str]]) -> tuple[Attempt, ...]:
        """Attempts from their `to_dict` form (as flows record them)."""
        return tuple(cls(row["strategy"], row["error"]) for row in rows)


class NoEligibleStrategy(PieceworksError):
    """No strategy of a plan can run; the message lists why and what would help."""

    reference = "no-eligible-strategy"
    hint = (
        "`pieceworks plan` shows why each strategy cannot run; --in-use, --force or"
        " another backend may allow one"
    )

    def __init__(self, plan: Plan) -> None:
        reasons = "; ".join(f"{s.name}: {s.reason}" for s in plan.strategies)
        helps = [f"{' + '.join(s.needs)} ({s.name})" for s in plan.strategies if s.needs]
        message = f"no {plan.operation} strategy can run on backend '{plan.backend}': {reasons}"
        if helps:
            message += "; a driver would need: " + ", or ".join(helps)
        super().__init__(message)
        self.plan = plan


class AllStrategiesFailed(PieceworksError):
    """Every eligible strategy ran and failed; each cause is listed in order."""

    reference = "all-strategies-failed"
    hint = "each strategy's error is in the message; -v shows more"

    def __init__(self, operation: str, backend: str, attempts: tuple[Attempt, ...]) -> None:
        causes = "; ".join(f"{a.strategy}: {a.error}" for a in attempts)
        super().__init__(f"every {operation} strategy failed on backend '{backend}': {causes}")
        self.attempts = attempts
