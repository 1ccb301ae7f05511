//go:build race

package router

// raceEnabled reports whether the race detector, which allocates, is on.
const raceEnabled = true
