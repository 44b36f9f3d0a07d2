"""Positions: batches in offset order from the partition's position, gaps sought back until the records come,
accepted only where the log no longer holds them."""

from __future__ import annotations

from processor.engine import Record
from processor.state.positions import Positions


def recs(*offsets: int) -> list[Record]:
    return [Record(o, b"k", b"{}", {}, 0) for o in offsets]


class Consumer:
    def __init__(self, applied: int = -1, earliest: int = 0):
        self.applied, self.first, self.seeks = applied, earliest, []

    def positions(self, hole_check_s: float = 5.0) -> Positions:
        async def earliest(p):
            return self.first

        async def seek(p, off):
            self.seeks.append(off)

        return Positions(lambda p: self.applied, earliest, seek, hole_check_s)


async def test_in_order_from_the_position_without_what_was_applied():
    c = Consumer(applied=4)
    pos = c.positions()
    got = await pos.in_order(0, recs(7, 3, 5, 6, 4))
    assert [r.offset for r in got] == [5, 6, 7] and pos.stats.already_applied == 2


async def test_nothing_applied_starts_at_the_logs_beginning():
    c = Consumer(applied=-1, earliest=100)
    got = await c.positions().in_order(0, recs(100, 101))
    assert [r.offset for r in got] == [100, 101]


async def test_a_gap_seeks_back_and_drops_the_rest():
    c = Consumer(applied=4)
    pos = c.positions()
    assert [r.offset for r in await pos.in_order(0, recs(5, 8, 9))] == [5]
    assert c.seeks == [6] and pos.stats.gap_seeks == 1
    pos.processed(0, 5)
    assert [r.offset for r in await pos.in_order(0, recs(6, 7))] == [6, 7]


async def test_a_lasting_gap_is_sought_back_while_the_log_holds_its_records():
    """However long the consumer keeps handing over later records (Faust's fetch loop can undo a seek), the
    records are not given up while the log still starts before them."""
    c = Consumer(applied=4, earliest=0)
    pos = c.positions(hole_check_s=0.0)
    for _ in range(3):
        assert await pos.in_order(0, recs(9, 10)) == []
    assert c.seeks == [5, 5, 5]
    assert [r.offset for r in await pos.in_order(0, recs(5, 6))] == [5, 6]


async def test_records_gone_from_the_log_are_a_hole_continued_after():
    c = Consumer(applied=4, earliest=0)
    pos = c.positions(hole_check_s=0.0)
    assert await pos.in_order(0, recs(9)) == []  # first sight: seek back
    c.first = 7  # retention deleted 5 and 6
    assert await pos.in_order(0, recs(9, 10)) == []  # 7 and 8 still exist: sought
    assert c.seeks == [5, 7]
    assert [r.offset for r in await pos.in_order(0, recs(7, 8, 9))] == [7, 8, 9]


async def test_nothing_applied_starts_at_the_log_s_beginning_whatever_faust_hands_over_first():
    """Faust may have committed records never applied (acked during a rebalance, let go at a stop): with nothing
    applied yet, the records before the first one handed over are read on their own."""
    async def seek(p, off):
        raise AssertionError("no seek")

    async def earliest(p):
        return 0

    async def read(p, start, end):
        return recs(*range(start, end))

    pos = Positions(lambda p: -1, earliest, seek, read=read)
    assert [r.offset for r in await pos.in_order(0, recs(40, 41))] == list(range(42))


async def test_forget_rereads_the_position():
    c = Consumer(applied=4)
    pos = c.positions()
    pos.processed(0, 20)
    pos.forget()
    assert [r.offset for r in await pos.in_order(0, recs(5))] == [5]


async def test_a_gap_is_read_on_its_own_and_applied_first():
    c = Consumer(applied=4)

    async def read(p, start, end):
        return recs(*range(start, end))

    pos = Positions(lambda p: c.applied, c.positions().__dict__["_earliest"], lambda p, o: None, read=read)
    got = await pos.in_order(0, recs(8, 9))
    assert [r.offset for r in got] == [5, 6, 7, 8, 9] and pos.stats.gap_reads == 1


async def test_records_retention_deleted_in_a_gap_are_a_hole_continued_after(caplog):
    c = Consumer(applied=4)

    async def read(p, start, end):
        return recs(*range(7, end))  # 5 and 6 are gone

    pos = Positions(lambda p: c.applied, c.positions().__dict__["_earliest"], lambda p, o: None, read=read)
    got = await pos.in_order(0, recs(9))
    assert [r.offset for r in got] == [7, 8, 9] and "records 5..6 of partition 0 are gone" in caplog.text
