"""Reading the sources of one ingest. Parsing is its CPU-heavy part, so with `[ingest] workers` above 1 and several
sources, each source is fetched and parsed in a worker process while the caller stores the ones already read.
arXiv API sources stay in the calling process, so their requests keep to one every few seconds."""

from __future__ import annotations

from concurrent.futures import Future, ProcessPoolExecutor
from datetime import date
from functools import lru_cache
from multiprocessing import get_context
from pathlib import Path

from digest.config import IngestSettings, SourceSettings
from digest.errors import FeedError
from digest.sources import read_source
from digest.sources.entry import Listing
from digest.sources.fetch import Fetcher, Validators

class SourceReader:
    """`start` hands the sources to the workers; `read` returns one source's Listing (or raises FeedError)."""

    def __init__(self, settings: IngestSettings, base_dir: Path, today: date):
        self.settings, self.base_dir, self.today = settings, base_dir, today
        self.fetcher = Fetcher(settings, base_dir)
        self.pool: ProcessPoolExecutor | None = None
        self.futures: dict[str, Future[Listing]] = {}
        self.validators: dict[str, Validators] = {}

    def __enter__(self) -> SourceReader:
        return self

    def __exit__(self, *_exc) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)
        self.fetcher.close()

    def start(self, sources: list[SourceSettings], validators: dict[str, Validators]) -> None:
        self.validators = validators
        parallel = [source for source in sources if not self.paced(source)]
        workers = min(self.settings.workers, len(parallel))
        if workers < 2:
            return
        self.pool = ProcessPoolExecutor(workers, mp_context=get_context("forkserver"))
        for source in parallel:
            self.futures[source.name] = self.pool.submit(
                read_in_worker, source, self.settings, self.base_dir, validators[source.name], self.today
            )

    def read(self, source: SourceSettings) -> Listing:
        future = self.futures.get(source.name)
        if future is None:
            return read_source(source, self.fetcher, self.validators[source.name], self.today)
        try:
            return future.result()
        except FeedError:
            raise
        except Exception as exc:  # a worker that died (killed, out of memory) takes its sources with it
            raise FeedError(f"the reading process failed: {type(exc).__name__}: {exc}") from exc

    def paced(self, source: SourceSettings) -> bool:
        return source.kind == "arxiv-api" and not self.fetcher.is_local(source.url)


def read_in_worker(
    source: SourceSettings, settings: IngestSettings, base_dir: Path, validators: Validators, today: date
) -> Listing:
    return read_source(source, worker_fetcher(settings, base_dir), validators, today)


@lru_cache(maxsize=4)
def worker_fetcher(settings: IngestSettings, base_dir: Path) -> Fetcher:
    """One HTTP client per worker process, reused for every source it reads."""
    return Fetcher(settings, base_dir)
