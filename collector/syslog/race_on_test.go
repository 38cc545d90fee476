//go:build race

package syslog

// raceEnabled: the race detector slows everything about tenfold, so the
// volume tests send less (the full volume runs without -race).
const raceEnabled = true
