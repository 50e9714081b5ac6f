"""CREMA-D: acted emotion in the file name, actors' demographics, the audio-only raters' votes."""

from __future__ import annotations

import re
from pathlib import Path

from ...io.manifests import format_votes
from .base import log, CorpusError, corpus_spec, _check_root, _find, _Misfit, _scan_named, _read_csv, _GENDER_WORDS


_CREMA_EMO = {"ANG": "angry", "DIS": "disgust", "FEA": "fear", "HAP": "happy", "NEU": "neutral", "SAD": "sad"}
_CREMA_VOTE = {"A": "angry", "D": "disgust", "F": "fear", "H": "happy", "N": "neutral", "S": "sad"}
_CREMA_SENTENCES = {
    "IEO": "It's eleven o'clock", "TIE": "That is exactly what happened", "IOM": "I'm on my way to the meeting",
    "IWW": "I wonder what this is about", "TAI": "The airplane is almost full", "MTI": "Maybe tomorrow it will be cold",
    "IWL": "I would like a new alarm clock", "ITH": "I think I have a doctor's appointment",
    "DFA": "Don't forget a jacket", "ITS": "I think I've seen this before", "TSI": "The surface is slick",
    "WSI": "We'll stop in a couple of minutes"}
_CREMA_NAME = re.compile(r"(\d{4})_([A-Z]{3})_(ANG|DIS|FEA|HAP|NEU|SAD)_(LO|MD|HI|XX|X)")


def _crema_votes(root: Path, corpus: str) -> tuple[dict[str, dict[str, float]], str]:
    """Per file stem, the voice-only raters' votes: counts from processedResults/tabulatedVotes.csv (rows keyed
    100000 * query type + clip, query type 1 = audio only), else the VoiceVote of summaryTable.csv (one vote per
    emotion named; ties are 'A:N'). -> (votes, the file used or '')."""
    tab = _find(root, ["tabulatedVotes.csv"], want_dir=False, depth=2)
    if tab:
        rows = _read_csv(tab[0], ("fileName",), corpus)
        index = next((c for c in rows[0] if c in ("", "Unnamed: 0")), None) if rows else None
        out: dict[str, dict[str, float]] = {}
        for row in rows:
            try:
                if index is not None and int(float(row[index])) // 100000 != 1:
                    continue
                out[row["fileName"].strip()] = {_CREMA_VOTE[c]: float(row[c]) for c in _CREMA_VOTE if row.get(c)}
            except ValueError:
                raise CorpusError(f"{corpus}: {tab[0]}: row of {row.get('fileName')!r} has non-numeric counts")
        return out, str(tab[0])
    summary = _find(root, ["summaryTable.csv"], want_dir=False, depth=2)
    if summary:
        rows = _read_csv(summary[0], ("FileName", "VoiceVote"), corpus)
        return {row["FileName"].strip(): {_CREMA_VOTE[c]: 1.0 for c in row["VoiceVote"].split(":")
                                          if c in _CREMA_VOTE} for row in rows}, str(summary[0])
    return {}, ""


@corpus_spec('crema-d', "speaker-kfold", "CREMA-D, 6 classes, 91 actors",
             layout=('AudioWAV/1001_DFA_ANG_XX.wav (actor_sentence_EMOTION_level, EMOTION in ANG/DIS/FEA/HAP/NEU/SAD, '
                     'level LO/MD/HI/XX); optional VideoDemographics.csv (ActorID, Sex) and processedResults/'
                     'tabulatedVotes.csv or summaryTable.csv (rater votes)'))
def prepare_crema_d(root) -> list[dict]:
    """CREMA-D: AudioWAV/<actor>_<sentence>_<EMO>_<level>.wav; 6 labels (the acted emotion), speaker = actor,
    gender from VideoDemographics.csv when present, ``text`` = the sentence, ``votes`` = the audio-only raters'
    votes when processedResults/ is present."""
    corpus = "crema-d"
    root = _check_root(corpus, root)
    sex: dict[str, str] = {}
    demo = _find(root, ["VideoDemographics.csv"], want_dir=False, depth=2)
    if demo:
        sex = {r["ActorID"].strip(): _GENDER_WORDS.get(r["Sex"].strip().lower(), "")
               for r in _read_csv(demo[0], ("ActorID", "Sex"), corpus)}

    def parse(path: Path):
        m = _CREMA_NAME.fullmatch(path.stem)
        if not m:
            raise _Misfit("name is not AAAA_SSS_EMO_LV (e.g. 1001_DFA_ANG_XX)")
        actor, sentence, emo, _level = m.groups()
        if sentence not in _CREMA_SENTENCES:
            raise _Misfit(f"unknown sentence code {sentence}")
        return _CREMA_EMO[emo], actor, sex.get(actor, ""), path.stem

    rows = _scan_named(corpus, root, parse)
    votes, source = _crema_votes(root, corpus)
    missing = 0
    for r in rows:
        stem = Path(r["path"]).stem
        r["text"] = _CREMA_SENTENCES[stem.split("_")[1]]
        r["votes"] = format_votes(votes.get(stem, {}))
        missing += bool(votes) and not r["votes"]
    if missing:
        log.info("%s: %d clip(s) have no votes in %s", corpus, missing, source)
    return rows
