from inspector.daemon.ledger import Ledger


def test_every_frame_ends_exactly_once_in_any_event_order():
    L = Ledger()
    L.acquired(0, {"frame_id": 0})
    L.dispatched(0, "w0-0")
    assert L.finish(0, "inspected") is not None
    assert L.finish(0, "lost") is None  # a late duplicate is ignored
    # a result that overtakes its acquired event
    assert L.finish(1, "inspected", {"frame_id": 1}) is not None
    L.acquired(1, {"frame_id": 1})
    L.acquired(2, {"frame_id": 2})
    L.finish(2, "dropped")
    assert L.balanced() and not L.outstanding()
    assert L.counts == {"acquired": 3, "inspected": 2, "dropped": 1, "lost": 0}


def test_dead_worker_frames_are_reported_and_late_dispatch_detected():
    L = Ledger()
    for i in range(3):
        L.acquired(i, {"frame_id": i})
    L.dispatched(0, "w0-0")
    L.dispatched(1, "w1-0")
    held = L.worker_died("w0-0")
    assert [s.frame_id for s in held] == [0]
    assert L.dispatched(2, "w0-0") is False  # dispatched to a worker already known dead
    assert L.outcome_of(0) is None
    L.finish(0, "lost")
    assert L.outcome_of(0) == "lost"
