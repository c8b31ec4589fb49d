"""Champion / challenger in the MLflow registry: one mechanism for both registered models.

A training run registers a new version of each model (the challenger). It takes the alias
(``champion``) when it beats the version holding it by ``min_gain`` on a metric both are scored
on with this run's data, or when no version holds the alias yet. Works with any MLflow registry
that has aliases: the local SQLite one, Unity Catalog.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import mlflow
from mlflow.entities.model_registry import ModelVersion

logger = logging.getLogger(__name__)


def _matches(registered: str, name: str) -> bool:
    # on Databricks the name is <catalog>.<schema>.<name>
    return registered == name or registered.endswith(f".{name}")


def registered_in_this_run(name: str) -> tuple[str, int]:
    """The full name and version of ``name`` that the active MLflow run registered."""
    run = mlflow.active_run()
    if run is None:
        raise RuntimeError("promotion needs the run's MLflow run (kedro-mlflow)")
    run_id = run.info.run_id
    versions = [
        version
        for version in mlflow.MlflowClient().search_model_versions(f"run_id='{run_id}'")
        if _matches(version.name, name)
    ]
    if not versions:
        raise RuntimeError(
            f"MLflow run {run_id} registered no version of {name}: set "
            "save_args.registered_model_name on its model's catalog entry"
        )
    latest = max(versions, key=lambda version: int(version.version))
    return latest.name, int(latest.version)


# the registry's answer when a model or alias does not exist (MLflow's own stores; Unity
# Catalog): the only error that means "no champion yet"
NOT_FOUND = frozenset({"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"})


class RegistryError(RuntimeError):
    """The registry answered with an error other than "not found": nothing was promoted."""


def registry_error(action: str, exc: Exception) -> RegistryError:
    """``exc``, an MLflow error while trying ``action``, as one line a user can act on."""
    text = str(exc).strip()
    if any(sign in text for sign in ("NewConnectionError", "Connection refused", "Max retries")):
        # the REST client's message is a page of urllib3 internals
        answer = "no connection"
    else:
        answer = (text.splitlines() or [type(exc).__name__])[0][:200]
    return RegistryError(
        f"the MLflow registry at {mlflow.get_registry_uri()} failed to {action} ({answer}). "
        "Nothing was promoted and no alias moved; run again once the registry answers"
    )


def champion_version(registered_model: str, alias: str) -> ModelVersion | None:
    """The version of ``registered_model`` holding ``alias``, read once; None only when the
    registry says the model or the alias does not exist. Any other error (no connection,
    permissions, throttling) raises :class:`RegistryError`: it must not pass for "no
    champion", which would promote a challenger without a comparison."""
    client = mlflow.MlflowClient()
    try:
        model = client.get_registered_model(registered_model)
        version = (model.aliases or {}).get(alias)
        if version is None:
            return None
        return client.get_model_version(model.name, str(version))
    except mlflow.exceptions.MlflowException as exc:
        if exc.error_code in NOT_FOUND:
            return None
        raise registry_error(
            f"say which version of {registered_model} has '{alias}'", exc
        ) from None


def version_uri(version: ModelVersion) -> str:
    """``models:/<name>/<version>``: the one version resolved, whatever the alias says later."""
    return f"models:/{version.name}/{version.version}"


def load_champion(
    registered_model: str, alias: str, load: Callable[[str], Any]
) -> tuple[ModelVersion, Any] | None:
    """The version holding ``alias`` and its model (``load(model_uri)``), the alias read once
    and the model loaded by version number; None when no version holds it yet."""
    version = champion_version(registered_model, alias)
    if version is None:
        return None
    return version, load(version_uri(version))


def shown(value: Any, width: int = 60) -> str:
    """``value`` as a reason prints it: a long one (a list of segments) cut to ``width``."""
    text = str(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def setting_change(name: str, before: Any, after: Any) -> str:
    """``name before → after``; for a long list, what it lost and gained (``without a, b,
    with c``), which a cut ``before → after`` would hide."""
    if len(str(before)) <= 60 and len(str(after)) <= 60:
        return f"{name} {before} → {after}"
    if isinstance(before, list) and isinstance(after, list):
        gone = [str(v) for v in before if v not in after]
        new = [str(v) for v in after if v not in before]
        if all(len(v) <= 40 for v in gone + new) and (gone or new):
            parts = [
                f"{word} {', '.join(values)}"
                for word, values in (("without", gone), ("with", new))
                if values
            ]
            return f"{name} {' and '.join(parts)}"
    return f"{name} {shown(before)} → {shown(after)}"


def setting_changes(before: dict[str, Any] | None, after: dict[str, Any] | None) -> list[str]:
    """:func:`setting_change` for each setting that differs (both None: none)."""
    before, after = before or {}, after or {}
    return [
        setting_change(name, before.get(name), after.get(name))
        for name in sorted(set(before) | set(after))
        if before.get(name) != after.get(name)
    ]


# scores are printed with 4 decimals, and compared as printed: a difference that does not show
# there is a tie whatever min_gain, and the same printed difference always gets the same word
# (in binary floats 0.565 - 0.560 is below 0.005 and 0.705 - 0.700 above it)
def as_printed(score: float) -> Decimal:
    """``score`` as the reports print it (4 decimals), exactly."""
    return Decimal(f"{score:.4f}")


def compare_scores(
    score: float | None, other: float | None, min_gain: float
) -> tuple[str, float | None]:
    """``better``, ``worse``, ``tie`` or ``unknown`` (a score is missing) for ``score``
    against ``other``, and the difference, both as printed (4 decimals). A difference below
    ``min_gain`` (taken as written, in decimal) or one that does not show when printed is a
    tie, never a win."""
    if score is None or other is None:
        return "unknown", None
    gain = as_printed(score) - as_printed(other)
    if gain == 0 or abs(gain) < Decimal(repr(float(min_gain))):
        return "tie", float(gain)
    return ("better" if gain > 0 else "worse"), float(gain)


def challenge(
    registered_model: str,
    version: int,
    promotion: dict[str, Any],
    challenger: dict[str, Any],
    champion: dict[str, Any] | None,
) -> dict[str, Any]:
    """The decision for ``version`` (``challenger``: its ``score``, its ``settings`` and what
    else the report shows; ``no_score``: why the score is None) against ``champion`` (its
    ``version``, ``score`` and ``settings``, or None when no version has the alias):
    ``promoted`` and the ``reason``, in the layout of ``model_promotion.json``.

    Settings (e.g. the CLV margin, its time unit) are the user's decision, not the model's: a
    challenger with other settings takes the alias whatever the metric says, and is not scored
    against the champion. A missing score never replaces a champion, and a difference below
    ``min_gain`` is a tie, which the champion keeps. Nothing is changed in the registry until
    :func:`settle`."""
    alias, metric, min_gain = promotion["alias"], promotion["metric"], promotion["min_gain"]
    decision: dict[str, Any] = {
        "registered_model": registered_model,
        "alias": alias,
        "metric": metric,
        "min_gain": min_gain,
        "challenger": {"version": version, **challenger},
        "champion": champion,
    }
    no_score = challenger.get("no_score", "no score")
    if champion is None:
        reason = f"no model had the alias '{alias}' yet"
        if challenger.get("score") is None:
            reason += f" ({metric} could not be computed: {no_score})"
        return {**decision, "promoted": True, "outcome": "first", "reason": reason}
    if champion.get("settings") is None and challenger.get("settings") is not None:
        return {
            **decision,
            "promoted": True,
            "outcome": "settings changed",
            "reason": f"settings changed: the champion, version {champion['version']}, was "
            "logged without its settings (before they were part of the model), so "
            f"{metric} cannot tell whether the two models mean the same; the challenger's "
            "are logged with it",
        }
    changes = setting_changes(champion.get("settings"), challenger.get("settings"))
    if changes:
        return {
            **decision,
            "promoted": True,
            "outcome": "settings changed",
            "reason": f"settings changed: {', '.join(changes)} (the champion, version "
            f"{champion['version']}, has the old ones; {metric} cannot decide between models "
            "with different settings, and the settings are the user's decision)",
        }
    outcome, gain = compare_scores(challenger.get("score"), champion.get("score"), min_gain)
    if outcome == "unknown":
        reason = (
            f"{metric} could not be computed ({no_score}): the champion (version "
            f"{champion['version']}) keeps the alias"
        )
        return {**decision, "promoted": False, "outcome": outcome, "reason": reason}
    scores = (
        f"{metric} {challenger['score']:.4f} vs the champion's {champion['score']:.4f} "
        f"(version {champion['version']}): a difference of {gain:+.4f}"
    )
    if outcome == "tie":
        reason = f"a tie, {scores}, below the {min_gain} required: the champion keeps the alias"
    else:
        reason = (
            f"{scores}, {'at least' if outcome == 'better' else 'below'} the {min_gain} required"
        )
    return {**decision, "promoted": outcome == "better", "outcome": outcome, "reason": reason}


def settle(decision: dict[str, Any], label: str) -> None:
    """Move the alias when ``decision`` promotes; log it either way."""
    name, version, alias = (
        decision["registered_model"],
        decision["challenger"]["version"],
        decision["alias"],
    )
    if decision["promoted"]:
        try:
            mlflow.MlflowClient().set_registered_model_alias(name, alias, str(version))
        except mlflow.exceptions.MlflowException as exc:
            raise registry_error(
                f"give {name} version {version} the alias '{alias}'", exc
            ) from None
    logger.info(
        "%s %s version %d %s '%s': %s",
        label,
        name,
        version,
        "takes" if decision["promoted"] else "does not take",
        alias,
        decision["reason"],
    )


def decision_scores(decision: dict[str, Any]) -> dict[str, float]:
    """``decision``'s scores as MLflow metrics: ``challenger``, ``champion`` (when there is
    one and it was scored) and ``promoted``. A missing score is left out, never logged as 0."""
    scores = {
        "challenger": decision["challenger"]["score"],
        "promoted": float(decision["promoted"]),
    }
    if decision["champion"]:
        scores["champion"] = decision["champion"].get("score")
    return {key: score for key, score in scores.items() if score is not None}


def production(decision: dict[str, Any]) -> dict[str, Any]:
    """The side of ``decision`` whose model writes the production tables: the challenger (this
    run's model) when promoted, else the champion that kept the alias."""
    return decision["challenger"] if decision["promoted"] else decision["champion"]


def produced_by(decision: dict[str, Any]) -> dict[str, Any]:
    """A ``model_versions.json`` entry for a training run: the version that wrote its tables,
    which is the champion after the decision (the run's own model when promoted, else the
    version that kept the alias), and the run's own version (the challenger)."""
    challenger = decision["challenger"]["version"]
    return {
        "registered_model": decision["registered_model"],
        "version": production(decision)["version"],
        "alias": decision["alias"],
        "holds_alias": True,
        "challenger_version": challenger,
        "challenger_promoted": decision["promoted"],
    }
