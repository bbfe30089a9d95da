"""Pipeline health: what the services report about themselves into InfluxDB (`pipeline` measurement)."""
from dashboards.panels import RANGE, Dashboard, stat, timeseries


def dashboard() -> Dashboard:
    return Dashboard("laoshan-pipeline", "数据管道 Pipeline health", [
        timeseries("处理量 Records processed per domain", f'''
from(bucket: "compliance") |> {RANGE}
  |> filter(fn: (r) => r._measurement == "pipeline" and r.service == "processor" and r._field == "records")
  |> aggregateWindow(every: v.windowPeriod, fn: sum, createEmpty: false)
  |> keep(columns: ["_time", "_value", "domain"])''', ("_time", "_value", "domain"), width=12),
        timeseries("消费延迟 Consumer lag (records)", f'''
from(bucket: "compliance") |> {RANGE}
  |> filter(fn: (r) => r._measurement == "pipeline" and r.service == "processor" and r._field == "lag")
  |> aggregateWindow(every: v.windowPeriod, fn: max, createEmpty: false)
  |> keep(columns: ["_time", "_value", "domain"])''', ("_time", "_value", "domain"), width=12),
        timeseries("桥接 Bridge: received, forwarded, dead letters", f'''
from(bucket: "compliance") |> {RANGE}
  |> filter(fn: (r) => r._measurement == "pipeline" and r.service == "bridge")
  |> filter(fn: (r) => r._field == "received" or r._field == "forwarded" or r._field == "deadlettered")
  |> keep(columns: ["_time", "_value", "_field", "instance"])''', ("_time", "_value", "_field", "instance"), width=12),
        stat("在途消息 Bridge in-flight (of the window)", f'''
from(bucket: "compliance") |> {RANGE}
  |> filter(fn: (r) => r._measurement == "pipeline" and r.service == "bridge" and r._field == "inflight")
  |> last() |> keep(columns: ["instance", "_value"])''', ("instance", "_value"), width=6,
             thresholds=[(None, "green"), (1000, "orange")]),
        stat("批处理耗时 Processor batch seconds", f'''
from(bucket: "compliance") |> {RANGE}
  |> filter(fn: (r) => r._measurement == "pipeline" and r.service == "processor" and r._field == "batch_seconds")
  |> max() |> keep(columns: ["domain", "_value"])''', ("domain", "_value"), unit="s", width=6,
             thresholds=[(None, "green"), (5, "orange"), (30, "red")]),
    ], tags=["pipeline"], time_from="now-6h", refresh="10s")
