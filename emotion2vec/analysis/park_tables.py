"""Park et al.'s tables from finished fine-tuning runs: ``emotion2vec report --layout park RUN...``.

Table 2  the speaker-identification network (``finetune --task speaker --park-blocks 1``), cross-entropy vs ArcFace
         (``--head linear`` / ``arcface``): WA and UA on the identification test set.
Table 6  the emotion network and the speaker-specific emotion representation network (``--fusion park``, the
         speaker network frozen), each with cross-entropy and ArcFace, WA and UA per number of attention blocks
         (``--park-blocks`` 1 to 4), the mean over the folds (leave-one-session-out on IEMOCAP in the paper).
Fig. 7   the speaker network trained with the emotion network (``--speaker-train head`` / ``all``) per alpha and beta
         (``--emotion-weight``, ``--id-weight``), as a table.

A run's place in the tables is read from its results.json (task, ``config.park_blocks``, ``config.head``,
``config.fusion``); runs that are not Park networks are refused by name. Cells are percentages; "–" where no run
was given.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from . import AnalysisError

__all__ = ["park_tables"]

_LOSS = {"linear": "Cross-entropy", "arcface": "ArcFace"}
_NETWORKS = ("Emotion classification network", "Speaker-specific emotion representation network")


def _cell(result: Mapping[str, Any], metric: str) -> float:
    s = (result.get("summary") or {}).get(metric)
    if s is None:
        raise AnalysisError(f"{result.get('source')}: no {metric} in its results")
    return 100.0 * float(s["mean"])


def park_tables(results: Iterable[Mapping[str, Any]]) -> str:
    """Markdown: Table 2 (when speaker runs are given) and Table 6 (when emotion runs are given)."""
    speaker: dict[str, Mapping] = {}
    emotion: dict[tuple[str, str, int], Mapping] = {}
    joint: list[Mapping] = []
    for r in results:
        config = r.get("config") or {}
        blocks = int(config.get("park_blocks") or 0)
        if blocks < 1:
            raise AnalysisError(f"{r.get('source')} ({r.get('corpus')}): not a Park network (fine-tuned without "
                                f"--park-blocks)")
        loss = _LOSS.get(str(config.get("head")), str(config.get("head")))
        if config.get("task") == "speaker":
            if loss in speaker:
                raise AnalysisError(f"two speaker-identification runs with the {loss} loss")
            speaker[loss] = r
            continue
        if config.get("fusion") == "park" and config.get("speaker_train", "frozen") != "frozen":
            joint.append(r)  # Fig. 7b-c: the speaker network trained with the emotion network
            continue
        network = _NETWORKS[1] if config.get("fusion") == "park" else _NETWORKS[0]
        key = (network, loss, blocks)
        if key in emotion:
            raise AnalysisError(f"two runs of the {network.lower()} with {loss} and {blocks} block(s)")
        emotion[key] = r
    if not speaker and not emotion and not joint:
        raise AnalysisError("no runs given")
    out = []
    if speaker:
        out += ["Speaker identification (Park et al., Table 2)", "", "| Loss | WA (%) | UA (%) |", "|---|---:|---:|"]
        for loss in ("Cross-entropy", "ArcFace"):
            if loss in speaker:
                out.append(f"| {loss} | {_cell(speaker[loss], 'wa'):.2f} | {_cell(speaker[loss], 'ua'):.2f} |")
        out.append("")
    if emotion:
        most = max(4, max(b for _, _, b in emotion))
        blocks = list(range(1, most + 1))
        out += ["Emotion recognition per number of attention blocks (Park et al., Table 6)", "",
                "| Network | Loss | Metric | " + " | ".join(str(b) for b in blocks) + " |",
                "|---|---|---|" + "---:|" * len(blocks)]
        for network in _NETWORKS:
            for loss in ("Cross-entropy", "ArcFace"):
                if not any((network, loss, b) in emotion for b in blocks):
                    continue
                for metric in ("wa", "ua"):
                    cells = [f"{_cell(emotion[(network, loss, b)], metric):.2f}" if (network, loss, b) in emotion
                             else "–" for b in blocks]
                    out.append(f"| {network} | {loss} | {metric.upper()} | " + " | ".join(cells) + " |")
        out.append("")
    if joint:
        names = {"head": "ArcFace fine-tuned", "all": "All fine-tuned"}
        out += ["The speaker network trained with the emotion network, alpha L_emotion + beta L_identification "
                "(Park et al., Fig. 7b-c)", "", "| Speaker network | Blocks | Loss | alpha | beta | WA (%) | UA (%) |",
                "|---|---:|---|---:|---:|---:|---:|"]
        for r in sorted(joint, key=lambda r: (r["config"]["speaker_train"], r["config"]["park_blocks"],
                                              r["config"].get("id_weight", 1.0))):
            c = r["config"]
            out.append(f"| {names[c['speaker_train']]} | {c['park_blocks']} | {_LOSS.get(c['head'], c['head'])} | "
                       f"{c.get('emotion_weight', 1.0):g} | {c.get('id_weight', 1.0):g} | {_cell(r, 'wa'):.2f} | "
                       f"{_cell(r, 'ua'):.2f} |")
        out.append("")
    return "\n".join(out)
