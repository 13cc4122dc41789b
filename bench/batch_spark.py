"""The PySpark side of `cargo bench -p sluice-data --bench batch`.

Runs the same SQL as sluice's batch step on the same CSV file, in `local[2]` mode, and writes
the result as Parquet. Prints `query_seconds=<s>`: the time from reading the file to the
Parquet files being written (the JVM's start-up is not in it; the bench also measures the whole
process).

usage: spark-submit bench/batch_spark.py CSV OUTPUT_FOLDER SQL SCHEMA_DDL
"""

import sys
import time

from pyspark.sql import SparkSession


def main() -> None:
    csv_path, output, sql, schema = sys.argv[1:5]
    spark = (
        SparkSession.builder.master("local[2]")
        .appName("sluice-batch-bench")
        .config("spark.ui.enabled", "false")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    started = time.monotonic()
    # the schema is given (as sluice's inputs could be), so Spark does not read the file
    # twice to infer it: the fastest way to run this query in Spark
    spark.read.csv(csv_path, header=True, schema=schema).createOrReplaceTempView("sales")
    spark.sql(sql).write.mode("overwrite").parquet(output)
    elapsed = time.monotonic() - started
    rows = spark.read.parquet(output).count()
    print(f"query_seconds={elapsed:.3f} rows={rows}", flush=True)
    spark.stop()


if __name__ == "__main__":
    main()
