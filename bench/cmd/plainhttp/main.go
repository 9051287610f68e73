// Command plainhttp is the plain HTTP file server that section 19 of
// BENCHMARKS.md measures the room protocol against: the least a server
// of files must do to keep them as durably as roomstore's file:// store.
//
//	plainhttp -listen 127.0.0.1:0 -dir DIR [-fsync=false]
//
// PUT /f/NAME writes the body to a temporary file in NAME's folder,
// fsyncs it, renames it into place and fsyncs the folder (no fsync with
// -fsync=false); GET /f/NAME serves the file (http.ServeContent); HEAD
// /f/NAME answers its size and modification time from one stat; DELETE
// /f/NAME removes it and fsyncs the folder. GET /_mallocs answers the
// process's runtime.MemStats.Mallocs, for counting its allocations. Once
// it listens it logs a JSON line on stderr whose msg is "listening" and
// whose addr is its address, as `roomstore serve --log-format json` does.
package main

import (
	"errors"
	"flag"
	"io"
	"io/fs"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "the address to listen on")
	dir := flag.String("dir", "", "the folder that holds the files")
	fsync := flag.Bool("fsync", true, "fsync each file and its folder at every change")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("plainhttp: ")
	if *dir == "" {
		log.Fatal("-dir is required")
	}
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	slog.New(slog.NewJSONHandler(os.Stderr, nil)).Info("listening", "addr", l.Addr().String())
	s := &server{dir: *dir, fsync: *fsync}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /_mallocs", func(w http.ResponseWriter, _ *http.Request) {
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		io.WriteString(w, strconv.FormatUint(m.Mallocs, 10))
	})
	mux.Handle("/f/", http.StripPrefix("/f/", s))
	log.Fatal(http.Serve(l, mux))
}

type server struct {
	dir   string
	fsync bool
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !filepath.IsLocal(r.URL.Path) || strings.HasSuffix(r.URL.Path, "/") {
		http.Error(w, "bad name", http.StatusBadRequest)
		return
	}
	p := filepath.Join(s.dir, filepath.FromSlash(r.URL.Path))
	var err error
	switch r.Method {
	case http.MethodPut:
		err = s.put(p, r.Body)
	case http.MethodGet:
		var f *os.File
		if f, err = os.Open(p); err == nil {
			defer f.Close()
			var fi fs.FileInfo
			if fi, err = f.Stat(); err == nil {
				w.Header().Set("Content-Type", "application/octet-stream") // no sniffing
				http.ServeContent(w, r, "", fi.ModTime(), f)
				return
			}
		}
	case http.MethodHead:
		var fi fs.FileInfo
		if fi, err = os.Stat(p); err == nil {
			w.Header().Set("Content-Length", strconv.FormatInt(fi.Size(), 10))
			w.Header().Set("Last-Modified", fi.ModTime().UTC().Format(http.TimeFormat))
			return
		}
	case http.MethodDelete:
		if err = os.Remove(p); err == nil {
			err = s.syncDir(filepath.Dir(p))
		}
	default:
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	switch {
	case errors.Is(err, fs.ErrNotExist):
		http.Error(w, "not found", http.StatusNotFound)
	case err != nil:
		http.Error(w, "failed", http.StatusInternalServerError)
	default:
		w.WriteHeader(http.StatusNoContent)
	}
}

// put writes body to a temporary file beside p, fsyncs it, renames it
// into place and fsyncs the folder.
func (s *server) put(p string, body io.Reader) error {
	f, err := os.CreateTemp(filepath.Dir(p), ".put-*")
	if errors.Is(err, fs.ErrNotExist) {
		if err = os.MkdirAll(filepath.Dir(p), 0o755); err == nil {
			err = s.syncDir(filepath.Dir(filepath.Dir(p)))
		}
		if err == nil {
			f, err = os.CreateTemp(filepath.Dir(p), ".put-*")
		}
	}
	if err != nil {
		return err
	}
	_, err = io.Copy(f, body)
	if err == nil && s.fsync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), p)
	}
	if err != nil {
		os.Remove(f.Name())
		return err
	}
	return s.syncDir(filepath.Dir(p))
}

func (s *server) syncDir(dir string) error {
	if !s.fsync {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
