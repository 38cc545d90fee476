//go:build race

package podlog

const raceEnabled = true
