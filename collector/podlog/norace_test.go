//go:build !race

package podlog

const raceEnabled = false
