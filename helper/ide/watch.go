package ide

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
)

// settle is how long a file must stay quiet before it is checked: editors
// write a file in several steps (truncate, write, rename).
const settle = 100 * time.Millisecond

// watcher pushes the diagnostics of config files as they change: the
// files in .doppel/ (*.json, *.yaml, *.yml) and .mirrord/ (*.json) of each
// workspace folder. A folder's .doppel/ or .mirrord/ created later is
// picked up (the folder itself is watched for it).
type watcher struct {
	w      *fsnotify.Watcher
	log    *slog.Logger
	push   func(path string, diags []Diagnostic)
	mu     sync.Mutex
	timers map[string]*time.Timer
	done   chan struct{}
}

func newWatcher(folders []string, log *slog.Logger, push func(string, []Diagnostic)) (*watcher, error) {
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	w := &watcher{w: fw, log: log, push: push, timers: map[string]*time.Timer{}, done: make(chan struct{})}
	for _, f := range folders {
		if err := fw.Add(f); err != nil {
			log.Warn("workspace folder not watched", "folder", f, "err", err)
			continue
		}
		for _, sub := range []string{".doppel", ".mirrord"} {
			dir := filepath.Join(f, sub)
			if st, err := os.Stat(dir); err == nil && st.IsDir() {
				if err := fw.Add(dir); err != nil {
					log.Warn("config directory not watched", "dir", dir, "err", err)
				}
			}
		}
	}
	go w.loop()
	return w, nil
}

// isConfigFile reports whether path is a config file the IDE should hear of.
func isConfigFile(path string) bool {
	dir := filepath.Base(filepath.Dir(path))
	ext := strings.ToLower(filepath.Ext(path))
	switch dir {
	case ".doppel":
		return ext == ".json" || ext == ".yaml" || ext == ".yml"
	case ".mirrord":
		return ext == ".json"
	}
	return false
}

func (w *watcher) loop() {
	for {
		select {
		case <-w.done:
			return
		case err, ok := <-w.w.Errors:
			if !ok {
				return
			}
			w.log.Warn("watching config files", "err", err)
		case ev, ok := <-w.w.Events:
			if !ok {
				return
			}
			base := filepath.Base(ev.Name)
			if (base == ".doppel" || base == ".mirrord") && ev.Has(fsnotify.Create) {
				if st, err := os.Stat(ev.Name); err == nil && st.IsDir() {
					w.w.Add(ev.Name)
					// Files may already be in it.
					if ents, err := os.ReadDir(ev.Name); err == nil {
						for _, e := range ents {
							w.changed(filepath.Join(ev.Name, e.Name()))
						}
					}
				}
				continue
			}
			if isConfigFile(ev.Name) {
				w.changed(ev.Name)
			}
		}
	}
}

// changed checks path once it has settled.
func (w *watcher) changed(path string) {
	if !isConfigFile(path) {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if t := w.timers[path]; t != nil {
		t.Reset(settle)
		return
	}
	w.timers[path] = time.AfterFunc(settle, func() {
		w.mu.Lock()
		delete(w.timers, path)
		w.mu.Unlock()
		select {
		case <-w.done:
			return
		default:
		}
		if _, err := os.Stat(path); err != nil {
			// Removed (or renamed away): nothing to show any more.
			w.push(path, []Diagnostic{})
			return
		}
		w.push(path, checkConfig(path, nil))
	})
}

// Close stops watching.
func (w *watcher) Close() error {
	close(w.done)
	w.mu.Lock()
	for _, t := range w.timers {
		t.Stop()
	}
	w.mu.Unlock()
	return w.w.Close()
}
