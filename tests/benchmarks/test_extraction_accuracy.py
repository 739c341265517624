"""The extraction benchmark's goals and report, on hand-made scores (the full run needs OCR)."""

from __future__ import annotations

from benchmarks.extraction_accuracy import goals, render_markdown


def scores(f1: float, gold: int = 10) -> dict:
    return {"gold": gold, "predicted": gold, "true_positives": round(f1 * gold), "precision": f1, "recall": f1,
            "f1": f1}


RESULTS = [
    {"style": "printed", "pages": 30, "run_seconds": 300.0,
     "kinds": {"lab": scores(0.97), "diagnosis": scores(0.90), "procedure": scores(0.0, gold=0)},
     "fields": {"lab.flag": scores(1.0)}, "assertion_confusion": {"negated": {"present": 1, "negated": 4,
                                                                            "historical": 0, "family": 0,
                                                                            "hypothetical": 0, "(missed)": 0}}},
    {"style": "noisy", "pages": 30, "run_seconds": 320.0,
     "kinds": {"lab": scores(0.5)}, "fields": {"lab.flag": scores(0.8)}, "assertion_confusion": {}},
]


def test_goals_hold_printed_kinds_with_gold_to_the_f1_floor() -> None:
    found = {g["goal"]: g["passed"] for g in goals(RESULTS)}

    assert found == {"lab F1 >= 0.95 (printed)": True, "diagnosis F1 >= 0.95 (printed)": False}


def test_report_puts_printed_and_noisy_side_by_side() -> None:
    report = {"metadata": {"date": "2026-11-22", "documents": 18, "seed": 11, "cpus": 2, "platform": "linux"},
              "results": RESULTS, "goals": goals(RESULTS)}

    markdown = render_markdown(report)

    assert "| lab | 10 | 0.970 | 0.970 | 0.970 | 10 | 0.500 | 0.500 | 0.500 |" in markdown
    assert "| diagnosis | 10 | 0.900 | 0.900 | 0.900 | - | - | - | - |" in markdown
    assert "| negated | 1 | 4 | 0 | 0 | 0 | 0 |" in markdown
    assert "| diagnosis F1 >= 0.95 (printed) | 0.900 | NO |" in markdown

