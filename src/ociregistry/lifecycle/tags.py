"""The tag lifecycle's services, built once from settings (runtime.build_runtime)."""

from __future__ import annotations

from dataclasses import dataclass

from ociregistry.config import Settings
from ociregistry.core.registry import Registry
from ociregistry.lifecycle.tag_history import TagHistory, TagLifecycle
from ociregistry.lifecycle.tag_rules import TagRules
from ociregistry.metadata.store import MetadataStore


@dataclass
class TagServices:
    rules: TagRules  # rules.is_immutable(repository, tag): the predicate retention uses
    history: TagHistory


def build_tag_services(
    settings: Settings, metadata: MetadataStore, registry: Registry
) -> TagServices:
    """Rules and history, and the store's hook that applies them to every tag change."""
    rules = TagRules.from_settings(metadata, settings.tags, settings.auth.groups)
    window = settings.tags.restore_window_seconds
    metadata.tag_hook = TagLifecycle(rules, window)
    return TagServices(rules, TagHistory(registry, metadata, rules, window))
