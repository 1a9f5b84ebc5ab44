"""Assign each sentence exactly one domain from its treebank's rules."""

from __future__ import annotations

from collections.abc import Sequence

from metasparse.data.registry import DomainRule
from metasparse.errors import DomainRuleError


class DomainAssigner:
    """Apply one treebank's domain rules; a sentence matched by none or by two is an error.

    Args:
        rules: the treebank's rules (all on the same field).
    """

    def __init__(self, rules: Sequence[DomainRule]) -> None:
        if not rules:
            raise ValueError("a DomainAssigner needs at least one rule")
        self.rules = tuple(rules)

    def assign(self, sent_id: str, newdoc: str | None, where: str = "") -> str:
        """Return the domain of one sentence.

        Args:
            sent_id: the sentence's ``# sent_id``.
            newdoc: the latest ``# newdoc id`` seen in the file (None if there was none).
            where: ``file:line`` of the sentence, for the error message.

        Raises:
            DomainRuleError: no rule or more than one rule matches.
        """
        hits = []
        for rule in self.rules:
            value = sent_id if rule.field == "sent_id" else newdoc
            if value is not None and rule.pattern.search(value):
                hits.append(rule)
        if len(hits) == 1:
            return hits[0].domain
        tb = self.rules[0].treebank
        prefix = f"{where}: " if where else ""
        if not hits:
            raise DomainRuleError(
                f"{prefix}sentence {sent_id!r} (newdoc {newdoc!r}) of {tb} matches no domain rule; rules: "
                + "; ".join(f"{r.field} ~ {r.pattern.pattern} -> {r.domain}" for r in self.rules)
            )
        raise DomainRuleError(
            f"{prefix}sentence {sent_id!r} of {tb} matches {len(hits)} domain rules: "
            + "; ".join(f"{r.pattern.pattern} -> {r.domain}" for r in hits)
        )
