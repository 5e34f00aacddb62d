"""Imported only by the extraction pool's forkserver (`set_forkserver_preload`), so that every worker it forks
starts warm.

Without it a worker's first page pays the extractors' lazy loading inside its time limit: trafilatura's date
search (htmldate) handed undated text to dateparser, which loads its locale data on that first call - 2.4 s
alone, over 5 s on a busy 2-core machine, so the first page of each new worker timed out in the demo. (`extract`
no longer runs that whole-text search; the other first-call costs remain.)
"""

import gc

from gristmill.tasks.crawl.extract import warm_up

warm_up()
# The server's objects (modules, the extractors' warm caches) are its workers' too: frozen, a worker's garbage
# collections never walk them, and never write the collector's bookkeeping into them (reference counts still do).
# Collected first, so no garbage of the warm-up is frozen too.
gc.collect()
gc.freeze()
