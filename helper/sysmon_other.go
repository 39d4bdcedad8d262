//go:build !linux

package main

func keepSysmonAwake() {}
