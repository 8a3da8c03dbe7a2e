"""The metrics seam on Spark (``--engine spark``, SPEC J2): the SQL of
:mod:`custtool.engines.sql` as Spark SQL through pyspark (``pip install 'custtool[spark]'``;
Java from the system, e.g. Debian's openjdk-17-jre-headless).

The orders Parquet is read by Spark; the distinct key tuples and the per-customer aggregates
come back as Parquet files, and the key → customer map goes to Spark as Parquet. One
SparkSession per process and master is kept (``getOrCreate``) and stopped at exit.

A master that cannot be reached is an exit-2 error within ``CUSTTOOL_SPARK_TIMEOUT`` seconds
(default 60): the session is started and a one-row job run under a watchdog.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from custtool.engines import sql as S
from custtool.errors import ConfigError, CusttoolError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

DEFAULT_TIMEOUT = 60.0


class SparkEngineError(CusttoolError):
    """Spark could not run (no pyspark, no Java, master unreachable, job failed): exit 2."""


def _spark_session(master: str, timeout: float) -> Any:
    """The process's SparkSession on ``master``, started (and checked with a one-row job)
    within ``timeout`` seconds."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise ConfigError(
            "--engine spark needs pyspark",
            "pip install 'custtool[spark]' (and Java: apt-get install openjdk-17-jre-headless)",
        ) from None
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        raise SparkEngineError(
            "--engine spark needs Java, and none was found",
            "apt-get install openjdk-17-jre-headless (or set JAVA_HOME)",
        )
    box: dict[str, Any] = {}
    seconds = max(int(timeout), 1)

    def start() -> None:
        try:
            active = SparkSession.getActiveSession() or getattr(
                SparkSession, "_instantiatedSession", None
            )
            if active is not None and active.sparkContext._jsc is None:
                active = None  # stopped
            if active is not None and active.sparkContext.master == master:
                spark = active  # the process's session (and its settings) reused
            else:
                if active is not None:
                    active.stop()  # one session per process: the master asked for
                spark = _builder(SparkSession, master, seconds).getOrCreate()
                spark.sparkContext.setLogLevel("ERROR")
                spark.range(1).count()  # an executor really runs a task
            spark.conf.set("spark.sql.ansi.enabled", "false")  # CAST of bad text → NULL
            # pandas writes nanosecond times, which Spark reads only as numbers
            spark.conf.set("spark.sql.legacy.parquet.nanosAsLong", "true")
            box["spark"] = spark
        except BaseException as exc:  # reported by the caller
            box["error"] = exc

    worker = threading.Thread(target=start, daemon=True, name="custtool-spark-start")
    worker.start()
    worker.join(timeout)
    if "spark" in box:
        return box["spark"]
    if "error" in box:
        raise spark_error(box["error"], master) from None
    raise SparkEngineError(
        f"Spark master {master} did not answer within {timeout:g} s",
        "check --spark-master (e.g. spark://host:7077) and that the cluster is up; "
        "or use --spark-master local[*]",
    )


#: Spark's SQL warehouse folder (made when a session starts, by default in the current
#: folder): a temporary one, shared by this user's sessions
WAREHOUSE = (
    Path(tempfile.gettempdir()) / f"custtool-spark-warehouse-{getattr(os, 'getuid', lambda: 0)()}"
)


def _builder(session: Any, master: str, seconds: int) -> Any:
    """A SparkSession builder for ``master``: no UI, a few shuffle partitions, network
    timeouts of ``seconds``."""
    return (
        session.builder.master(master)
        .appName("custtool")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        # not ./spark-warehouse in the user's folder: custtool makes no tables there
        .config("spark.sql.warehouse.dir", str(WAREHOUSE))
        .config("spark.sql.shuffle.partitions", str(max(2, 2 * (os.cpu_count() or 1))))
        .config("spark.network.timeout", f"{max(seconds, 10)}s")
        .config("spark.network.timeoutInterval", f"{max(seconds, 10)}s")
        .config("spark.executor.heartbeatInterval", f"{max(seconds // 2, 5)}s")
        .config("spark.rpc.askTimeout", f"{seconds}s")
        .config("spark.rpc.lookupTimeout", f"{seconds}s")
        .config("spark.scheduler.maxRegisteredResourcesWaitingTime", f"{seconds}s")
    )


def spark_error(exc: BaseException, master: str | None) -> CusttoolError:
    """The exit-2 error for a Spark failure (first line of its message)."""
    if isinstance(exc, CusttoolError):
        return exc
    java = getattr(exc, "java_exception", None)  # py4j's error: the Java exception's message
    message = str(java.toString()) if java is not None else str(exc)
    text = message.strip().splitlines()[0][:300] if message.strip() else type(exc).__name__
    if "JAVA_GATEWAY_EXITED" in str(exc) or "Java gateway" in str(exc):
        return SparkEngineError(
            f"Spark could not start Java: {text}",
            "install Java (apt-get install openjdk-17-jre-headless) or set JAVA_HOME",
        )
    return SparkEngineError(
        f"Spark on {master or 'local[*]'} failed: {text}",
        "check --spark-master and the cluster's logs; --engine duckdb runs on one machine",
    )


def _kind(t: str) -> str:
    t = t.lower()
    if t == "timestamp_ntz":
        return "naive"
    if t == "timestamp":
        return "aware"
    if t == "date":
        return "date"
    if t == "boolean":
        return "bool"
    if t == "string":
        return "string"
    if t in {"tinyint", "smallint", "int", "bigint", "float", "double"} or t.startswith("decimal"):
        return "number"
    return "other"


class SparkRunner:
    """The seam's SQL on a SparkSession; intermediate results as Parquet in a temp folder."""

    dialect = S.SPARK

    def __init__(self, master: str, tz: str, timeout: float | None = None) -> None:
        if timeout is None:
            timeout = float(os.environ.get("CUSTTOOL_SPARK_TIMEOUT", DEFAULT_TIMEOUT))
        self.spark = _spark_session(master, timeout)
        self.spark.conf.set("spark.sql.session.timeZone", tz)
        self.tz = tz
        self._tmp = Path(tempfile.mkdtemp(prefix="custtool-spark-"))
        self._names: list[str] = []
        self._cached: list[str] = []
        self._read: tuple[str, Any] | None = None
        self._n = 0

    def _dir(self, stem: str) -> str:
        self._n += 1
        return str(self._tmp / f"{stem}_{self._n}")

    def source(self, path: str) -> str:
        from pyspark.sql import functions as F

        read = self._read if self._read is not None and self._read[0] == str(path) else None
        df = read[1] if read else self.spark.read.parquet(str(path))
        df = df.withColumn("rn", F.monotonically_increasing_id())
        df.createOrReplaceTempView("custtool_src")
        self._names.append("custtool_src")
        return "custtool_src"

    def schema(self, path: str) -> dict[str, str]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        df = self.spark.read.parquet(str(path))
        self._read = (str(path), df)  # source() reads the file through the same DataFrame
        kinds = {name: _kind(t) for name, t in df.dtypes}
        for field in pq.read_schema(path):  # nanosecond times arrive as numbers
            t = field.type
            if field.name in kinds and pa.types.is_timestamp(t) and t.unit == "ns":
                kinds[field.name] = "naive_ns" if t.tz is None else "aware_ns"
        return kinds

    def time_expr(self, col: str, kind: str) -> str:
        # the session time zone is the firm's: instants are cast to its wall clock
        if kind == "naive":
            return col
        if kind in {"aware", "date"}:
            return f"CAST({col} AS TIMESTAMP_NTZ)"
        if kind == "string":  # naive text = local time, text with an offset converted
            trimmed = S.SPARK.trim.format(x=col)
            return f"CAST(CAST({trimmed} AS TIMESTAMP) AS TIMESTAMP_NTZ)"
        if kind == "naive_ns":  # the wall clock itself, to the microsecond, no time zone
            n = 86_400_000_000_000
            return (
                f"TIMESTAMP_NTZ '1970-01-01 00:00:00' + make_dt_interval("
                f"CAST(({col} - pmod({col}, {n})) div {n} AS INT), 0, 0, "
                f"CAST(pmod({col}, {n}) div 1000 AS DECIMAL(18, 0)) / 1000000)"
            )
        if kind == "aware_ns":  # an instant: its wall clock in the firm's time zone
            return f"CAST(timestamp_micros({col} div 1000) AS TIMESTAMP_NTZ)"
        return "CAST(NULL AS TIMESTAMP_NTZ)"

    def arrow(self, sql: str) -> Any:
        """The result of ``sql``, handed back as Parquet."""
        import pyarrow.parquet as pq

        out = self._dir("result")
        self.spark.sql(sql).write.parquet(out)
        return pq.read_table(out)

    def frame(self, sql: str) -> pd.DataFrame:
        import pandas as pd

        rows = self.spark.sql(sql).collect()
        if rows:
            return pd.DataFrame([r.asDict() for r in rows])
        return pd.DataFrame(columns=self.spark.sql(sql).columns)

    def register(self, name: str, df: pd.DataFrame) -> str:
        out = self._dir(name)
        os.makedirs(out)
        df.to_parquet(Path(out) / "part-0.parquet", index=False)
        self.spark.read.parquet(out).createOrReplaceTempView(name)
        self._names.append(name)
        return name

    def table(self, name: str, sql: str) -> str:
        self.spark.sql(f"CACHE TABLE {name} AS {sql}")
        self._cached.append(name)
        self._names.append(name)
        return name

    def fit_limit(self) -> None:
        """Spark's memory is the cluster's (spark.driver.memory / executor memory)."""

    def view(self, name: str, sql: str) -> str:
        self.spark.sql(f"CREATE OR REPLACE TEMP VIEW {name} AS {sql}")
        self._names.append(name)
        return name

    def copy(self, sql: str, path: Path) -> None:
        out = self._dir("copy")
        self.spark.sql(sql).coalesce(1).write.parquet(out)
        part = sorted(Path(out).glob("part-*.parquet"))
        if not part:  # no rows: an empty file with the columns
            import pyarrow.parquet as pq

            pq.write_table(self.arrow(sql), path)
            return
        shutil.move(str(part[0]), str(path))

    def close(self) -> None:
        try:
            for name in self._cached:
                self.spark.sql(f"UNCACHE TABLE IF EXISTS {name}")
            for name in self._names:
                self.spark.catalog.dropTempView(name)
        except Exception:  # pragma: no cover - the session may be gone
            pass
        shutil.rmtree(self._tmp, ignore_errors=True)
