// Package podlog is the node agent's receiver: it follows the container
// logs the kubelet keeps under /var/log/pods/<namespace>_<pod>_<uid>/
// <container>/<restart>.log, turns every line into an event and hands the
// events to the pipeline, which anonymizes them and forwards them to the
// aggregators (collector/sink/forward). It owns discovery, reading, line
// formats, rotation and the read positions; it must not know where events
// go after the pipeline.
//
// # Nothing lost, nothing twice
//
// The files are the buffer. A batch is read from one file, handed to the
// pipeline with Submit, and the file's read position advances only when
// Submit returns nil, that is, when the aggregator has answered 2xx. The
// positions are written to the state directory atomically (a temporary
// file, fsync, rename, fsync of the directory) every checkpoint_interval;
// after a crash the lines since the last checkpoint are read and sent
// again. They are sent under the ids they had: an event's id is
// "<file id>.<w>:<n>", the n-th line that starts in the w-th MiB of the
// file, where the file id names the file's content (its container and its
// first line). The id depends on the file alone, not on how reads or
// batches were cut, so the aggregator's Elasticsearch sink stores a line
// once however often it arrives. The forward sink keeps these ids across
// the hop (see its package comment).
//
// # Files are known by their content
//
// A file is identified by a fingerprint of its first line (up to 1KiB)
// together with its container, and held by device and inode while it is
// open. So a renamed file (the kubelet's rotation), a copy (copytruncate)
// and a compressed copy (the kubelet's 0.log.<time>.gz) all continue the
// same record, while a new file in a reused inode, or the new content of a
// truncated file, starts a record of its own.
//
// Rotation by rename and create: the renamed file stays open and is read
// to its end; it is finished once the new live file has lines (the
// runtime has reopened) and a read after that found nothing more, or once
// it has not been written for rotate_wait. Every unfinished file of a
// container is held open from the moment it is seen, so the kubelet
// deleting rotated files, or the whole pod, does not take lines the agent
// has not read yet. A compressed file whose uncompressed twin is held is
// not read; one found after a restart (the twin is gone) is decompressed
// and read from the recorded position.
//
// Copytruncate: a live file whose first line changed (or that shrank) was
// truncated; its new content is read from the start, and the rest of the
// old content from the copy, which carries the old fingerprint. Lines the
// application wrote between the copy and the truncation are lost; that is
// copytruncate's own flaw.
//
// Files found at the first start are read from the beginning (or, with
// start_at end, from their end); rotated files are read only if they were
// written after the positions were last saved, that is, while the agent
// was away.
//
// # Lines and events
//
// The format is detected per file from its first byte: CRI
// ("<time> <stream> <P|F> <text>") or Docker's json-file. Lines the
// runtime split (CRI P, json-file entries without the newline) are joined
// per stream up to max_line_bytes; longer lines are cut and flagged
// log.flags ["truncated"]. With a multiline rule, a line matching its start
// pattern starts an event and the following lines join it, up to max_lines,
// max_bytes and max_wait; such events are flagged ["multiline"].
//
// Whether a line joins what waits before it is decided by the runtime's
// timestamps (a line stamped more than max_wait or partial_wait after the
// latest stamp of what waits starts anew), not by when the agent read it,
// so a file read again after a restart is split into the same events with
// the same ids. At the file's end a waiting event is sent 250ms (of the
// agent's clock) after its wait, for lines stamped in time but written
// late, and it waits as long as a line whose first part is in time for
// it is still being joined from the runtime's parts.
//
// Known limits: a line stamped in time but written more than 250ms late,
// after its event was sent, is an event of its own while running but
// joins the event when the file is read again after a restart that lost
// the acknowledgement; the joined event has the stored event's id, so if
// the late line itself had not been stored yet, it is lost. Lines without
// a runtime timestamp (not CRI or json-file) are joined by the agent's
// clock while running, so the same can happen to them.
// Docker json-file rotation is followed while running, through the
// symlink's target.
package podlog
