"""The stream snapshot's responses carry the category score of ``answer_submitted`` (issue 18);
events written before it carry none and read as full credit or nothing."""

from __future__ import annotations

from qbank.analytics import facts_from_events


def _event(n: int, kind: str, **payload) -> dict:
    envelope = {"event_id": f"e{n}", "event_type": kind, "timestamp": f"2026-12-05T08:0{n}:00+00:00"}
    return {
        **envelope,
        "tenant_id": "t",
        "aggregate_type": "quiz",
        "aggregate_id": "q1",
        "quiz_id": "q1",
        **payload,
    }


def test_responses_take_the_events_score_and_old_events_their_full_credit():
    answer = {"question_version_id": 11, "theta_after": 0.1, "se_after": 0.9, "time_taken_ms": None}
    events = [
        _event(0, "quiz_started", user_id="u", exam_code="E", mode="exam", adaptive=True, theta=0.0, se=1.0),
        _event(1, "answer_submitted", position=0, question_id=1, is_correct=False, score=2, **answer),
        _event(2, "answer_submitted", position=1, question_id=2, is_correct=True, score=3, **answer),
        _event(
            3, "answer_submitted", position=2, question_id=3, is_correct=True, **answer
        ),  # before issue 18
        _event(4, "answer_submitted", position=3, question_id=4, is_correct=False, **answer),
    ]
    responses = facts_from_events(events)["responses"].to_pydict()
    assert responses["score"] == [2, 3, 1, 0]
    assert responses["is_correct"] == [False, True, True, False]
