package dashboards

import "github.com/grafana/grafana-foundation-sdk/go/units"

// alertsBoard shows alerts by the role they are routed to: what fires now,
// how that changed over time, which alerts are noisiest, and what the log
// rules match. It reads leitstand's alert gauges and the ALERTS and
// ALERTS_FOR_STATE series that leitstand's rule engine writes into its TSDB
// the way Prometheus does.
func alertsBoard() *board {
	a := selector(`role=~"$role"`, `severity=~"$severity"`)
	firing := a("leitstand_alerts", `state="firing"`)
	pending := a("leitstand_alerts", `state="pending"`)

	return &board{
		uid:   "leitstand-alerts",
		title: "Alerts by role",
		description: "Alerts by the role they are routed to and by severity: firing and pending now and over time, " +
			"the noisiest alerts, log-rule hits and delivery to Alertmanager. Source: leitstand's rule engine " +
			"(leitstand_alerts, ALERTS, ALERTS_FOR_STATE) served by leitstand's Prometheus-compatible query API.",
		tags: []string{"leitstand", "alerts"},
		from: "now-24h",
		vars: []variable{
			{name: "role", label: "Role", query: "label_values(leitstand_alerts, role)", allValue: ".*",
				description: "Role(s) alerts are routed to."},
			{name: "severity", label: "Severity", query: "label_values(leitstand_alerts, severity)", allValue: ".*",
				description: "Alert severity."},
		},
		rows: []row{
			{num: 1, title: "Now", panels: []*panel{
				statPanel("Firing", units.Short,
					"Alerts firing now for the selected roles and severities.",
					q("sum("+firing+")", "")).size(8, 4).redFrom(1),
				statPanel("Pending", units.Short,
					"Alerts whose condition holds but whose 'for' duration has not yet passed.",
					q("sum("+pending+")", "")).size(8, 4).above(1, 10),
				statPanel("Critical firing", units.Short,
					"Critical alerts firing now for the selected roles.",
					q("sum("+selector(`role=~"$role"`)("leitstand_alerts", `state="firing"`, `severity="critical"`)+")", "")).size(8, 4).redFrom(1),
				tablePanel("Firing now", units.Short,
					"Every alert firing now with its labels; the value column is 1.",
					q(a("ALERTS", `alertstate="firing"`), "")),
			}},
			{num: 2, title: "Over time", panels: []*panel{
				timeseriesPanel("Firing by role and severity", units.Short,
					"Alerts firing over time, by role and severity.",
					q("sum by (role, severity) ("+firing+")", "{{role}} {{severity}}")).stack(),
				timeseriesPanel("Pending by role and severity", units.Short,
					"Alerts pending over time, by role and severity.",
					q("sum by (role, severity) ("+pending+")", "{{role}} {{severity}}")).stack(),
			}},
			{num: 3, title: "Noisiest alerts", panels: []*panel{
				tablePanel("Noisiest alerts in the time range", units.Short,
					"The ten alerts that became active most often in the dashboard's time range (a new activation changes ALERTS_FOR_STATE; each series counts its first one too).",
					q("topk(10, sum by (alertname, role, severity) (changes("+a("ALERTS_FOR_STATE")+"[$__range]) + 1))", "")).size(12, 8),
				timeseriesPanel("Firing series per alert (top 10)", units.Short,
					"How many series of each alert fire at once: an alert firing for many instances at the same time is a candidate for grouping or a better rule.",
					q("topk(10, count by (alertname) ("+a("ALERTS", `alertstate="firing"`)+"))", "{{alertname}}")),
			}},
			{num: 4, title: "Log rules", panels: []*panel{
				timeseriesPanel("Log-rule hits", "suffix: /s",
					"Rule matches per second in the stream, and the alert notifications (firing and resolved) log rules sent. Per-rule counts are the record rules' own series.",
					q("sum("+rate("leitstand_log_rules_matches_total")+")", "matches"),
					q("sum("+rate("leitstand_log_rules_notifications_total")+")", "notifications")),
				tablePanel("Log rules in the time range", units.Short,
					"Matches, notifications, matches dropped at a rule's cap (series, alert groups or seen values, by rule kind), and record series and state of removed rules dropped after log_rules.idle_timeout, in the dashboard's time range.",
					q("sum(increase(leitstand_log_rules_matches_total[$__range]))", ""),
					q("sum(increase(leitstand_log_rules_notifications_total[$__range]))", ""),
					q("sum by (kind) (increase(leitstand_log_rules_dropped_total[$__range]))", ""),
					q("sum by (what) (increase(leitstand_log_rules_expired_total[$__range]))", "")).size(12, 8),
			}},
			{num: 5, title: "Delivery to Alertmanager", collapsed: true, panels: []*panel{
				timeseriesPanel("Alerts handed to the notifier", "suffix: /s",
					"Alerts per second the rule engine handed to the role router (firing and resolved, resends included).",
					q("sum("+rate("leitstand_rule_alerts_sent_total")+")", "handed over")),
				timeseriesPanel("Notifications to Alertmanager", "suffix: /s",
					"Alerts sent to each Alertmanager per second, send errors, and alerts dropped because the queue was full or no Alertmanager answered.",
					q("sum by (alertmanager) ("+rate("leitstand_notifications_sent_total")+")", "{{alertmanager}} sent"),
					q("sum by (alertmanager) ("+rate("leitstand_notifications_errors_total")+")", "{{alertmanager}} errors"),
					q("sum("+rate("leitstand_notifications_dropped_total")+")", "dropped")).above(0.01, 1),
			}},
		},
	}
}
