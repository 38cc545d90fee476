package dashboards

import "github.com/grafana/grafana-foundation-sdk/go/units"

// postgresBoard shows PostgreSQL load from postgres_exporter (metric names
// checked against 0.11.1 with PostgreSQL 15).
func postgresBoard() *board {
	n := selector(`instance=~"$instance"`)
	db := selector(`instance=~"$instance"`, `datname=~"$datname"`)
	sumRate := func(by, metric string) string {
		if by == "" {
			return "sum(" + rate(db(metric)) + ")"
		}
		return "sum by (" + by + ") (" + rate(db(metric)) + ")"
	}
	hitRatio := func(by string) string {
		hit, read := sumRate(by, "pg_stat_database_blks_hit"), sumRate(by, "pg_stat_database_blks_read")
		return hit + " / (" + hit + " + " + read + ")"
	}
	return &board{
		uid:   "leitstand-postgresql",
		title: "PostgreSQL",
		description: "PostgreSQL load: connections against max_connections, transactions, cache hit ratio, tuples, " +
			"locks, deadlocks, temporary files, size growth, replication lag and the longest transaction. " +
			"Source: prometheus-community postgres_exporter (metric names checked against 0.11.1 with PostgreSQL 15); " +
			"replication lag in seconds is read on standbys from pg_replication_lag_seconds (exporter 0.12+) " +
			"or pg_replication_lag (the pg_replication query of the exporter's example queries.yaml).",
		tags: []string{"leitstand", "postgresql", "database"},
		from: "now-6h",
		vars: []variable{
			{name: "instance", label: "Server", query: "label_values(pg_up, instance)", allValue: ".+",
				description: "postgres_exporter instance(s), one per PostgreSQL server."},
			{name: "datname", label: "Database", query: `label_values(pg_stat_database_numbackends{instance=~"$instance"}, datname)`, allValue: ".+",
				description: "Database(s) for the per-database panels; \"All\" leaves out the statistics row of shared catalogs, which has no database name."},
		},
		rows: []row{
			{num: 1, title: "Overview", panels: []*panel{
				statPanel("Up", units.Short,
					"Whether each exporter reached its server on the last scrape.",
					q(n("pg_up"), "{{instance}}")).redBelow(1).valueText("1", "UP", "green", "0", "DOWN", "red"),
				statPanel("Connections used", units.PercentUnit,
					"Highest share of max_connections in use on any selected server. At 100% new clients are refused.",
					q("max(sum by (instance) ("+n("pg_stat_database_numbackends")+") / on (instance) "+n("pg_settings_max_connections")+")", "")).above(0.75, 0.9).decimal(1),
				statPanel("Transactions", units.OpsPerSecond,
					"Commits and rollbacks per second over the selected databases.",
					q(sumRate("", "pg_stat_database_xact_commit")+" + "+sumRate("", "pg_stat_database_xact_rollback"), "")),
				statPanel("Cache hit ratio", units.PercentUnit,
					"Share of block reads served from shared buffers instead of the OS or disk. Below 99% on an OLTP load the working set no longer fits.",
					q(hitRatio(""), "")).below(0.9, 0.99).decimal(2),
				statPanel("Longest transaction", units.Seconds,
					"Age of the oldest open transaction. Long transactions hold back vacuum and bloat tables.",
					q("max("+db("pg_stat_activity_max_tx_duration")+")", "")).above(60, 300),
				statPanel("Replication lag", units.BytesIEC,
					"Largest WAL distance between a primary and one of its standbys (replay position).",
					q("max("+n("pg_stat_replication_pg_wal_lsn_diff")+")", "")).above(16<<20, 256<<20),
			}},
			{num: 2, title: "Connections", panels: []*panel{
				timeseriesPanel("Connections vs max_connections", units.Short,
					"Backends connected to each server, against its max_connections.",
					q("sum by (instance) ("+n("pg_stat_database_numbackends")+")", "{{instance}} connections"),
					q(n("pg_settings_max_connections"), "{{instance}} max_connections")),
				timeseriesPanel("Connections by state", units.Short,
					"Backends by state: active, idle, idle in transaction (holds locks and snapshots; should stay near 0).",
					q("sum by (state) ("+db("pg_stat_activity_count")+")", "{{state}}")).stack(),
			}},
			{num: 3, title: "Transactions and tuples", panels: []*panel{
				timeseriesPanel("Commits and rollbacks", units.OpsPerSecond,
					"Transactions committed and rolled back per second, per database. A rising share of rollbacks points at application errors.",
					q(sumRate("datname", "pg_stat_database_xact_commit"), "{{datname}} commits"),
					q(sumRate("datname", "pg_stat_database_xact_rollback"), "{{datname}} rollbacks")),
				timeseriesPanel("Cache hit ratio per database", units.PercentUnit,
					"Share of block reads served from shared buffers, per database.",
					q(hitRatio("datname"), "{{datname}}")).bounds(0, 1).below(0.9, 0.99),
				timeseriesPanel("Tuples read", units.RowsPerSecond,
					"Rows returned by sequential and index scans, and rows fetched by index scans, per second.",
					q(sumRate("datname", "pg_stat_database_tup_returned"), "{{datname}} returned"),
					q(sumRate("datname", "pg_stat_database_tup_fetched"), "{{datname}} fetched")),
				timeseriesPanel("Tuples written", units.RowsPerSecond,
					"Rows inserted, updated and deleted per second.",
					q(sumRate("datname", "pg_stat_database_tup_inserted"), "{{datname}} inserted"),
					q(sumRate("datname", "pg_stat_database_tup_updated"), "{{datname}} updated"),
					q(sumRate("datname", "pg_stat_database_tup_deleted"), "{{datname}} deleted")),
			}},
			{num: 4, title: "Locks, deadlocks and long transactions", collapsed: true, panels: []*panel{
				timeseriesPanel("Locks by mode", units.Short,
					"Locks held or awaited, by mode. Many exclusive locks with few sessions point at lock contention.",
					q("sum by (mode) ("+db("pg_locks_count")+")", "{{mode}}")).stack(),
				timeseriesPanel("Deadlocks", "suffix: /s",
					"Deadlocks detected per second; each one aborted a transaction.",
					q(sumRate("datname", "pg_stat_database_deadlocks"), "{{datname}}")).redFrom(0.001),
				timeseriesPanel("Temporary file bytes", units.BytesPerSecondSI,
					"Bytes written to temporary files by sorts and hashes that did not fit in work_mem.",
					q(sumRate("datname", "pg_stat_database_temp_bytes"), "{{datname}}")),
				timeseriesPanel("Longest transaction", units.Seconds,
					"Age of the oldest open transaction per database.",
					q("max by (instance, datname) ("+db("pg_stat_activity_max_tx_duration")+")", "{{instance}} {{datname}}")).above(60, 300),
			}},
			{num: 5, title: "Size", collapsed: true, panels: []*panel{
				timeseriesPanel("Database size", units.BytesIEC,
					"On-disk size of each database.",
					q(db("pg_database_size_bytes"), "{{instance}} {{datname}}")),
				timeseriesPanel("Database growth", units.BytesPerSecondSI,
					"How fast each database grows (per-second slope over the last 30 minutes); negative after a VACUUM FULL or a dropped table.",
					q("deriv("+db("pg_database_size_bytes")+"[30m])", "{{instance}} {{datname}}")),
			}},
			{num: 6, title: "Replication", collapsed: true, panels: []*panel{
				timeseriesPanel("Replication lag in bytes", units.BytesIEC,
					"On each primary: WAL written but not yet replayed by each standby (pg_stat_replication).",
					q(n("pg_stat_replication_pg_wal_lsn_diff"), "{{instance}} → {{application_name}} {{client_addr}}")).above(16<<20, 256<<20),
				timeseriesPanel("Replication lag in seconds", units.Seconds,
					"On each standby: time since the last replayed transaction's commit; 0 on primaries. Grows on an idle primary too, so read it together with the byte lag.",
					q(n("pg_replication_lag_seconds")+" or "+n("pg_replication_lag"), "{{instance}}")).above(30, 300),
			}},
		},
	}
}
