package dashboards

import "github.com/grafana/grafana-foundation-sdk/go/units"

// MongoDBExporter names the exporter and versions the MongoDB dashboard is
// written for; testdata/mongodb_exporter_metrics.txt lists every metric it
// uses and where the name comes from.
const MongoDBExporter = "Percona mongodb_exporter v0.40 or newer, run with --collect-all (or at least " +
	"--collector.diagnosticdata and --collector.replicasetstatus) and --compatible-mode " +
	"(for mongodb_mongod_replset_member_replication_lag and the oplog timestamps)"

// mongodbBoard shows a MongoDB replica set from Percona's mongodb_exporter.
// No MongoDB server runs in our test environment: the metric names are
// checked against the exporter's naming rules and documentation
// (testdata/mongodb_exporter_metrics.txt), not against live data.
func mongodbBoard() *board {
	// The exporter adds its topology labels (rs_nm, cl_role, ...) to the
	// metrics it derives from server documents...
	n := selector(`rs_nm=~"$rs_nm"`, `instance=~"$instance"`)
	// ...but not to mongodb_up or to the 0.1x-compatible replica-set
	// metrics, which name the set in "set".
	inst := selector(`instance=~"$instance"`)
	compat := selector(`set=~"$rs_nm"`, `instance=~"$instance"`)
	// Every member's exporter reports the state of all members; max by
	// member counts each member once.
	member := func(metric string) string { return "max by (member_idx) (" + n(metric) + ")" }
	conns := func(typ string) string { return "sum(" + n("mongodb_ss_connections", `conn_type="`+typ+`"`) + ")" }
	cacheMax := n("mongodb_ss_wt_cache_maximum_bytes_configured")

	return &board{
		uid:   "leitstand-mongodb",
		title: "MongoDB replica set",
		description: "MongoDB replica set: up, operations per type, connections, member health and state, replication lag, " +
			"oplog window and the WiredTiger cache. Source: " + MongoDBExporter + ".",
		tags: []string{"leitstand", "mongodb", "database"},
		from: "now-6h",
		vars: []variable{
			{name: "rs_nm", label: "Replica set", query: "label_values(mongodb_ss_connections, rs_nm)", allValue: ".*",
				description: "Replica set name(s) (the exporter's rs_nm label)."},
			{name: "instance", label: "Member", query: `label_values(mongodb_up, instance)`, allValue: ".+",
				description: "mongodb_exporter instance(s), one per mongod."},
		},
		rows: []row{
			{num: 1, title: "Overview", panels: []*panel{
				statPanel("Up", units.Short,
					"Whether each exporter reached its mongod on the last scrape.",
					q(inst("mongodb_up"), "{{instance}}")).redBelow(1).valueText("1", "UP", "green", "0", "DOWN", "red"),
				statPanel("Unhealthy members", units.Short,
					"Members the replica set itself reports unhealthy (health 0): down, unreachable or removed.",
					q("count("+member("mongodb_rs_members_health")+" == 0) or vector(0)", "")).redFrom(1),
				statPanel("Primary", units.Short,
					"The member in state PRIMARY. Empty while the set has no primary (an election, or a lost majority): writes fail.",
					q(member("mongodb_rs_members_state")+" == 1", "{{member_idx}}")).showNames(),
				statPanel("Max replication lag", units.Seconds,
					"Largest distance between the primary's last operation and a secondary's.",
					q("max("+compat("mongodb_mongod_replset_member_replication_lag")+")", "")).above(10, 60),
				statPanel("Connections used", units.PercentUnit,
					"Share of the connection limit in use across the selected members.",
					q(conns("current")+" / ("+conns("current")+" + "+conns("available")+")", "")).above(0.75, 0.9).decimal(1),
				statPanel("WiredTiger cache fill", units.PercentUnit,
					"Fullest WiredTiger cache of the selection. From 80% eviction threads work; from 95% application threads must evict too and latency rises.",
					q("max("+n("mongodb_ss_wt_cache_bytes_currently_in_the_cache")+" / "+cacheMax+")", "")).above(0.8, 0.95).decimal(1),
			}},
			{num: 2, title: "Operations", panels: []*panel{
				timeseriesPanel("Operations per type", units.OpsPerSecond,
					"Client operations per second by type: insert, query, update, delete, getmore, command.",
					q("sum by (legacy_op_type) ("+rate(n("mongodb_ss_opcounters"))+")", "{{legacy_op_type}}")).stack(),
				timeseriesPanel("Operations applied by replication", units.OpsPerSecond,
					"Operations secondaries apply from the oplog per second, per member and type.",
					q("sum by (instance, legacy_op_type) ("+rate(n("mongodb_ss_opcountersRepl"))+")", "{{instance}} {{legacy_op_type}}")),
			}},
			{num: 3, title: "Connections", panels: []*panel{
				timeseriesPanel("Connections", units.Short,
					"Client connections open on each member, and how many more it would accept.",
					q("sum by (instance) ("+n("mongodb_ss_connections", `conn_type="current"`)+")", "{{instance}} current"),
					q("sum by (instance) ("+n("mongodb_ss_connections", `conn_type="available"`)+")", "{{instance}} available")),
				timeseriesPanel("Connections opened", "suffix: /s",
					"New connections per second. A high rate means clients do not pool their connections.",
					q("sum by (instance) ("+rate(n("mongodb_ss_connections", `conn_type="totalCreated"`))+")", "{{instance}}")),
			}},
			{num: 4, title: "Replica set", panels: []*panel{
				statPanel("Member health", units.Short,
					"Health of each member as the replica set sees it.",
					q(member("mongodb_rs_members_health"), "{{member_idx}}")).size(12, 4).redBelow(1).
					valueText("1", "healthy", "green", "0", "down", "red"),
				statPanel("Member state", units.Short,
					"Replica-set state of each member.",
					q(member("mongodb_rs_members_state"), "{{member_idx}}")).size(12, 4).
					valueText("0", "STARTUP", "blue", "1", "PRIMARY", "green", "2", "SECONDARY", "green",
						"3", "RECOVERING", "orange", "5", "STARTUP2", "blue", "6", "UNKNOWN", "red",
						"7", "ARBITER", "text", "8", "DOWN", "red", "9", "ROLLBACK", "orange", "10", "REMOVED", "red"),
				timeseriesPanel("Replication lag per member", units.Seconds,
					"Seconds each secondary's last applied operation is behind the primary's.",
					q("max by (set, name) ("+compat("mongodb_mongod_replset_member_replication_lag")+")", "{{set}} {{name}}")).above(10, 60),
				timeseriesPanel("Oplog window", units.Seconds,
					"Time between the oldest and the newest oplog entry: how long a member may stay behind before it needs a full resync.",
					q(inst("mongodb_mongod_replset_oplog_head_timestamp")+" - "+inst("mongodb_mongod_replset_oplog_tail_timestamp"), "{{instance}}")).below(3600, 86400),
			}},
			{num: 5, title: "WiredTiger cache", collapsed: true, panels: []*panel{
				timeseriesPanel("Cache size", units.BytesIEC,
					"Bytes in the WiredTiger cache, of which dirty (modified, not yet written), against the configured maximum.",
					q(n("mongodb_ss_wt_cache_bytes_currently_in_the_cache"), "{{instance}} in cache"),
					q(n("mongodb_ss_wt_cache_tracked_dirty_bytes_in_the_cache"), "{{instance}} dirty"),
					q(cacheMax, "{{instance}} maximum")),
				timeseriesPanel("Cache fill", units.PercentUnit,
					"Cache used as a share of its maximum. Eviction starts at 80% and stalls application threads from 95%.",
					q(n("mongodb_ss_wt_cache_bytes_currently_in_the_cache")+" / "+cacheMax, "{{instance}}")).bounds(0, 1).above(0.8, 0.95),
				timeseriesPanel("Dirty cache share", units.PercentUnit,
					"Dirty bytes as a share of the cache maximum. Eviction of dirty pages starts at 5% and stalls application threads from 20%.",
					q(n("mongodb_ss_wt_cache_tracked_dirty_bytes_in_the_cache")+" / "+cacheMax, "{{instance}}")).above(0.05, 0.2),
				timeseriesPanel("Cache pages read, written and evicted", "suffix: pages/s",
					"Pages read into the cache (cache misses), written from it, and evicted per second. Reads climbing with a full cache mean the working set does not fit.",
					q(rate(n("mongodb_ss_wt_cache_pages_read_into_cache")), "{{instance}} read in"),
					q(rate(n("mongodb_ss_wt_cache_pages_written_from_cache")), "{{instance}} written"),
					q(rate(n("mongodb_ss_wt_cache_modified_pages_evicted")), "{{instance}} evicted (modified)"),
					q(rate(n("mongodb_ss_wt_cache_unmodified_pages_evicted")), "{{instance}} evicted (unmodified)")),
			}},
		},
	}
}
