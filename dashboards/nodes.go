package dashboards

import "github.com/grafana/grafana-foundation-sdk/go/units"

// nodesBoard shows the worker nodes by the USE method (utilisation,
// saturation, errors) for CPU, memory, disks, filesystems and network, per
// node and across the cluster, from node_exporter (checked against 1.5.0).
func nodesBoard() *board {
	n := selector(`job=~"$job"`, `instance=~"$instance"`)
	// Pseudo and container filesystems would crowd the real ones out.
	const fs = `fstype!~"tmpfs|ramfs|overlay|squashfs|nsfs|fuse.*"`
	// RAM-backed block devices (zram swap) are not disks.
	const disk = `device!~"(zram|ram|loop)[0-9]+"`
	// Virtual interfaces of the container network would count every
	// packet twice.
	const nic = `device!~"lo|veth.*|cali.*|cilium.*|lxc.*|flannel.*|cni.*|docker.*|br-.*|virbr.*|ifb.*|tunl.*|vxlan.*|kube-ipvs.*"`
	idle := n("node_cpu_seconds_total", `mode="idle"`)
	// up of the node_exporter jobs only: "All" jobs is the regexp .+, which
	// would take in every other scrape job too.
	nodeUp := "(" + n("up") + " and on (job) node_uname_info)"
	cores := "count by (instance) (" + idle + ")"

	return &board{
		uid:   "leitstand-nodes",
		title: "Nodes (USE method)",
		description: "Worker nodes by the USE method: utilisation, saturation and errors of CPU, memory, disks, " +
			"filesystems and network, per node and cluster-wide. Source: node_exporter (metric names checked against 1.5.0).",
		tags: []string{"leitstand", "nodes", "use-method"},
		from: "now-12h",
		vars: []variable{
			{name: "job", label: "Job", query: "label_values(node_uname_info, job)", allValue: ".+",
				description: "Scrape job(s) of node_exporter."},
			{name: "instance", label: "Node", query: `label_values(node_uname_info{job=~"$job"}, instance)`, allValue: ".+",
				description: "Node(s) to show; cluster-wide panels aggregate over the selection."},
		},
		rows: []row{
			{num: 1, title: "Cluster overview", panels: []*panel{
				statPanel("Nodes up", units.Short,
					"Node exporters that answered their last scrape.",
					q("sum("+nodeUp+")", "")),
				statPanel("Nodes down", units.Short,
					"Node exporters that did not answer their last scrape; any is a node or its exporter in trouble.",
					q("count("+nodeUp+" == 0) or vector(0)", "")).redFrom(1),
				statPanel("CPU utilisation", units.PercentUnit,
					"Share of all selected cores that was busy (not idle) over the rate interval.",
					q("1 - avg("+rate(idle)+")", "")).above(0.7, 0.9).decimal(1),
				statPanel("CPU saturation", units.Short,
					"1-minute load average per core across the selection. Above 1 runnable tasks queue for a core.",
					q("sum("+n("node_load1")+") / count("+idle+")", "")).above(1, 2).decimal(2),
				statPanel("Memory utilisation", units.PercentUnit,
					"Share of memory not available to new work (1 - MemAvailable / MemTotal), cluster-wide.",
					q("1 - sum("+n("node_memory_MemAvailable_bytes")+") / sum("+n("node_memory_MemTotal_bytes")+")", "")).above(0.8, 0.9).decimal(1),
				statPanel("Fullest filesystem", units.PercentUnit,
					"Space used on the fullest filesystem of the selection.",
					q("max(1 - "+n("node_filesystem_avail_bytes", fs)+" / "+n("node_filesystem_size_bytes", fs)+")", "")).above(0.8, 0.9).decimal(1),
			}},
			{num: 2, title: "CPU", panels: []*panel{
				timeseriesPanel("CPU utilisation per node", units.PercentUnit,
					"Utilisation: share of each node's cores that was busy (not idle).",
					q("1 - avg by (instance) ("+rate(idle)+")", "{{instance}}")).bounds(0, 1).above(0.7, 0.9),
				timeseriesPanel("CPU saturation: load per core", units.Short,
					"Saturation: 1-minute load average divided by the node's cores. Above 1, runnable tasks wait for a core.",
					q(n("node_load1")+" / on (instance) "+cores, "{{instance}}")).above(1, 2),
				timeseriesPanel("CPU time by mode (cluster)", units.PercentUnit,
					"Where the busy CPU time of the selection goes: user, system, iowait, steal and the rest, as a share of all cores.",
					q("sum by (mode) ("+rate(n("node_cpu_seconds_total", `mode!="idle"`))+") / scalar(count("+idle+"))", "{{mode}}")).stack(),
				timeseriesPanel("CPU pressure", units.PercentUnit,
					"Saturation from the kernel's pressure stall information: share of time runnable tasks waited for a CPU (needs PSI, Linux 4.20+).",
					q(rate(n("node_pressure_cpu_waiting_seconds_total")), "{{instance}}")).above(0.1, 0.25),
			}},
			{num: 3, title: "Memory", panels: []*panel{
				timeseriesPanel("Memory utilisation per node", units.PercentUnit,
					"Utilisation: share of memory not available to new work (1 - MemAvailable / MemTotal).",
					q("1 - "+n("node_memory_MemAvailable_bytes")+" / "+n("node_memory_MemTotal_bytes"), "{{instance}}")).bounds(0, 1).above(0.8, 0.9),
				timeseriesPanel("Available memory", units.BytesIEC,
					"Memory the kernel estimates is available to new work without swapping (MemAvailable).",
					q(n("node_memory_MemAvailable_bytes"), "{{instance}}")),
				timeseriesPanel("Memory pressure: stalled time", units.PercentUnit,
					"Saturation: share of time some (or all) tasks waited for memory: reclaim, swap-in, refaults (needs PSI, Linux 4.20+).",
					q(rate(n("node_pressure_memory_waiting_seconds_total")), "{{instance}} some"),
					q(rate(n("node_pressure_memory_stalled_seconds_total")), "{{instance}} full")).above(0.05, 0.2),
				timeseriesPanel("Memory pressure: major page faults", "suffix: faults/s",
					"Saturation: page faults that had to read from disk. A sustained rise means the working set no longer fits in memory.",
					q(rate(n("node_vmstat_pgmajfault")), "{{instance}}")),
				timeseriesPanel("Swap used", units.BytesIEC,
					"Swap space in use (SwapTotal - SwapFree). Nodes without swap show 0.",
					q(n("node_memory_SwapTotal_bytes")+" - "+n("node_memory_SwapFree_bytes"), "{{instance}}")),
				timeseriesPanel("Swap activity and OOM kills", "suffix: /s",
					"Saturation and errors: pages swapped in and out per second, and processes killed by the out-of-memory killer per second.",
					q(rate(n("node_vmstat_pswpin")), "{{instance}} pages in"),
					q(rate(n("node_vmstat_pswpout")), "{{instance}} pages out"),
					q(rate(n("node_vmstat_oom_kill")), "{{instance}} OOM kills")),
			}},
			{num: 4, title: "Disk I/O", collapsed: true, panels: []*panel{
				timeseriesPanel("Disk utilisation (time busy)", units.PercentUnit,
					"Utilisation: share of time the device had I/O in flight. Near 100% a spinning disk is saturated; SSDs and NVMe serve requests in parallel, so look at the queue too.",
					q(rate(n("node_disk_io_time_seconds_total", disk)), "{{instance}} {{device}}")).bounds(0, 1).above(0.7, 0.9),
				timeseriesPanel("Disk saturation: average queue length", units.Short,
					"Saturation: average number of requests in flight or queued (weighted I/O time per second).",
					q(rate(n("node_disk_io_time_weighted_seconds_total", disk)), "{{instance}} {{device}}")),
				timeseriesPanel("Disk throughput", units.BytesPerSecondSI,
					"Bytes read and written per second.",
					q(rate(n("node_disk_read_bytes_total", disk)), "{{instance}} {{device}} read"),
					q(rate(n("node_disk_written_bytes_total", disk)), "{{instance}} {{device}} written")),
				timeseriesPanel("Disk IOPS", units.IOOpsPerSecond,
					"Read and write operations completed per second.",
					q(rate(n("node_disk_reads_completed_total", disk)), "{{instance}} {{device}} reads"),
					q(rate(n("node_disk_writes_completed_total", disk)), "{{instance}} {{device}} writes")),
				timeseriesPanel("Disk latency", units.Seconds,
					"Average time per completed read and write, queueing included. Empty while a device does no reads or writes.",
					q(rate(n("node_disk_read_time_seconds_total", disk))+" / "+rate(n("node_disk_reads_completed_total", disk)), "{{instance}} {{device}} read"),
					q(rate(n("node_disk_write_time_seconds_total", disk))+" / "+rate(n("node_disk_writes_completed_total", disk)), "{{instance}} {{device}} write")).above(0.02, 0.1),
			}},
			{num: 5, title: "Filesystems", collapsed: true, panels: []*panel{
				timeseriesPanel("Filesystem space used", units.PercentUnit,
					"Utilisation: share of each filesystem's space that is used (as seen by unprivileged users).",
					q("1 - "+n("node_filesystem_avail_bytes", fs)+" / "+n("node_filesystem_size_bytes", fs), "{{instance}} {{mountpoint}}")).bounds(0, 1).above(0.8, 0.9),
				timeseriesPanel("Forecast: free space in 7 days", units.BytesIEC,
					"Free space each filesystem will have in 7 days if it keeps filling as over the last 6 hours (linear regression). Below zero it will be full within the week.",
					q("predict_linear("+n("node_filesystem_avail_bytes", fs)+"[6h], 7 * 86400)", "{{instance}} {{mountpoint}}")).redBelow(0),
				timeseriesPanel("Inodes used", units.PercentUnit,
					"Share of each filesystem's inodes that is used; a full inode table refuses new files while space remains.",
					q("1 - "+n("node_filesystem_files_free", fs)+" / "+n("node_filesystem_files", fs), "{{instance}} {{mountpoint}}")).bounds(0, 1).above(0.8, 0.9),
				timeseriesPanel("Filesystem errors", units.Short,
					"Errors: 1 while node_exporter cannot stat the filesystem (a hung NFS mount, a dead disk) or it is mounted read-only.",
					q(n("node_filesystem_device_error", fs), "{{instance}} {{mountpoint}} unreadable"),
					q(n("node_filesystem_readonly", fs), "{{instance}} {{mountpoint}} read-only")).redFrom(1),
			}},
			{num: 6, title: "Network", collapsed: true, panels: []*panel{
				timeseriesPanel("Network throughput", units.BytesPerSecondSI,
					"Utilisation: bytes received and sent per second on physical and bond interfaces (container veths excluded).",
					q(rate(n("node_network_receive_bytes_total", nic)), "{{instance}} {{device}} received"),
					q(rate(n("node_network_transmit_bytes_total", nic)), "{{instance}} {{device}} sent")),
				timeseriesPanel("Network saturation: TCP retransmits", units.PercentUnit,
					"Saturation: share of sent TCP segments that were retransmissions. Rising retransmits mean loss or congestion on the path.",
					q(rate(n("node_netstat_Tcp_RetransSegs"))+" / "+rate(n("node_netstat_Tcp_OutSegs")), "{{instance}}")).above(0.01, 0.05),
				timeseriesPanel("Network errors", units.PacketsPerSecond,
					"Errors: packets with receive or transmit errors per second.",
					q(rate(n("node_network_receive_errs_total", nic)), "{{instance}} {{device}} receive"),
					q(rate(n("node_network_transmit_errs_total", nic)), "{{instance}} {{device}} transmit")).redFrom(1),
				timeseriesPanel("Network drops", units.PacketsPerSecond,
					"Errors: packets dropped per second, e.g. full ring buffers or no socket to deliver to.",
					q(rate(n("node_network_receive_drop_total", nic)), "{{instance}} {{device}} receive"),
					q(rate(n("node_network_transmit_drop_total", nic)), "{{instance}} {{device}} transmit")).above(1, 100),
			}},
		},
	}
}
