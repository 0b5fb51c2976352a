"""What two rule sets declare differently: catalog values and attribute declarations added or removed (names,
listed values, patterns, deprecation). `rules diff` states these beside the inputs whose answers change, so a
reviewer sees an edit of the vocabulary even where no answer changes (yet)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.rules.language.attributes import AttributeDeclaration
from app.rules.language.model import RuleSet


@dataclass(frozen=True)
class AttributeChange:
    """One attribute declared by both sets whose allowed values differ: listed values added or removed, or the
    pattern (or the kind of declaration) changed."""

    name: str
    values_added: tuple[str, ...]
    values_removed: tuple[str, ...]
    old_allowed: str
    new_allowed: str


@dataclass(frozen=True)
class DeclarationChanges:
    """Catalog values and attribute declarations added, removed or changed from the old set to the new one."""

    catalog_added: tuple[str, ...] = ()
    catalog_removed: tuple[str, ...] = ()
    attributes_added: tuple[AttributeDeclaration, ...] = ()
    attributes_removed: tuple[AttributeDeclaration, ...] = ()
    attributes_changed: tuple[AttributeChange, ...] = ()

    @property
    def any(self) -> bool:
        return any(vars(self).values())


def allowed(declaration: AttributeDeclaration) -> str:
    """What a declaration allows, in words: its listed values quoted, or its pattern; and whether it is deprecated."""
    if declaration.values is not None:
        shown = "values " + ", ".join(f"'{v}'" for v in declaration.values)
    else:
        shown = f"values match {declaration.pattern}"
    return f"{shown} (deprecated)" if declaration.deprecated else shown


def declaration_changes(old: RuleSet, new: RuleSet) -> DeclarationChanges:
    """Compare what the two sets declare (the order of the new set, then what only the old one had)."""
    old_values, new_values = set(old.catalog.values), set(new.catalog.values)
    old_attributes = {d.name: d for d in old.attributes}
    new_attributes = {d.name: d for d in new.attributes}
    changed = []
    for name, now in new_attributes.items():
        was = old_attributes.get(name)
        if was is None or (was.values, was.pattern, was.deprecated) == (now.values, now.pattern, now.deprecated):
            continue
        before, after = was.values or (), now.values or ()
        changed.append(
            AttributeChange(
                name,
                tuple(v for v in after if v not in before),
                tuple(v for v in before if v not in after),
                allowed(was),
                allowed(now),
            )
        )
    return DeclarationChanges(
        catalog_added=tuple(v for v in new.catalog.values if v not in old_values),
        catalog_removed=tuple(v for v in old.catalog.values if v not in new_values),
        attributes_added=tuple(d for name, d in new_attributes.items() if name not in old_attributes),
        attributes_removed=tuple(d for name, d in old_attributes.items() if name not in new_attributes),
        attributes_changed=tuple(changed),
    )


def _declared(declaration: AttributeDeclaration) -> dict[str, Any]:
    return {"name": declaration.name, "values": declaration.values, "pattern": declaration.pattern}


def as_json(changes: DeclarationChanges) -> dict[str, Any]:
    """The changes as JSON: catalog values, attributes added and removed (name, values, pattern), changed."""
    return {
        "catalog": {"added": list(changes.catalog_added), "removed": list(changes.catalog_removed)},
        "attributes": {
            "added": [_declared(d) for d in changes.attributes_added],
            "removed": [_declared(d) for d in changes.attributes_removed],
            "changed": [
                {
                    "name": c.name,
                    "values_added": list(c.values_added),
                    "values_removed": list(c.values_removed),
                    "old": c.old_allowed,
                    "new": c.new_allowed,
                }
                for c in changes.attributes_changed
            ],
        },
    }


def report_lines(changes: DeclarationChanges) -> list[str]:
    """The text sections: a heading per kind of declaration change, a line per value or attribute."""
    lines: list[str] = []
    for heading, values in (
        ("catalog values added", changes.catalog_added),
        ("catalog values removed", changes.catalog_removed),
    ):
        if values:
            lines += [f"{heading}: {len(values)}", f"  {', '.join(values)}"]
    for heading, declarations in (
        ("attributes added", changes.attributes_added),
        ("attributes removed", changes.attributes_removed),
    ):
        if declarations:
            lines.append(f"{heading}: {len(declarations)}")
            lines += [f"  {d.name}: {allowed(d)}" for d in declarations]
    if changes.attributes_changed:
        lines.append(f"attribute declarations changed: {len(changes.attributes_changed)}")
        for c in changes.attributes_changed:
            parts = []
            if c.values_added:
                parts.append("values added " + ", ".join(f"'{v}'" for v in c.values_added))
            if c.values_removed:
                parts.append("values removed " + ", ".join(f"'{v}'" for v in c.values_removed))
            if not parts:
                parts.append(f"{c.old_allowed} -> {c.new_allowed}")
            elif c.old_allowed.startswith("values match") or c.new_allowed.startswith("values match"):
                parts.append(f"({c.old_allowed} -> {c.new_allowed})")
            lines.append(f"  {c.name}: {'; '.join(parts)}")
    return lines
