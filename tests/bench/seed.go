// seed.go - the seed's cache (1 M entries of 1 KiB) in Go: filled, dropped, and debug.FreeOSMemory() timed, for comparison with seed-scenario.c.
//
// Built at run time by run-seed.sh with the Go toolchain; standard library
// only.  Same shape as seed-scenario.c: -t goroutines fill one map shard
// each (string key -> []byte value), then the maps are dropped (-k keeps the
// last entry alive), then debug.FreeOSMemory() - a forced GC plus returning
// all free pages to the OS - is timed.  Go has no explicit free: "free" here
// is dropping the references, so rss_free is before any collection.
//
// Output, one line on stdout, same keys as seed-scenario.c:
//   seed-scenario threads=T entries=N value_bytes=B keep=0|1 via=go
//     fill_ms=F rss_fill_kib=N free_ms=F rss_free_kib=N op_ms=F released_bytes=N rss_after_kib=N
// released_bytes is HeapReleased after minus before.
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"
)

var kept []byte // -k: the one live value

func rssKiB() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return -1
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return -1
	}
	pages, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return -1
	}
	return pages * int64(os.Getpagesize()) / 1024
}

func ms(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e6 }

func main() {
	threads := flag.Int("t", 1, "filling goroutines (one map shard each)")
	entries := flag.Int("n", 1<<20, "cache entries")
	valueBytes := flag.Int("b", 1024, "bytes per value")
	keep := flag.Bool("k", false, "keep the last entry alive")
	flag.Parse()
	if *threads < 1 || *entries < *threads || *valueBytes < 1 {
		flag.Usage()
		os.Exit(2)
	}

	t0 := time.Now()
	shards := make([]map[string][]byte, *threads)
	var wg sync.WaitGroup
	for i := 0; i < *threads; i++ {
		from, to := *entries*i / *threads, *entries*(i+1) / *threads
		shards[i] = make(map[string][]byte, to-from)
		wg.Add(1)
		go func(m map[string][]byte, from, to int) {
			defer wg.Done()
			for j := from; j < to; j++ {
				v := make([]byte, *valueBytes)
				for k := range v {
					v[k] = byte(j)
				}
				m[fmt.Sprintf("cache-key-%09d", j)] = v
			}
		}(shards[i], from, to)
	}
	wg.Wait()
	fillMs := ms(time.Since(t0))
	rssFill := rssKiB()

	t0 = time.Now()
	if *keep {
		kept = shards[*threads-1][fmt.Sprintf("cache-key-%09d", *entries-1)]
	}
	for i := range shards {
		shards[i] = nil
	}
	freeMs := ms(time.Since(t0))
	rssFree := rssKiB()

	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	t0 = time.Now()
	debug.FreeOSMemory()
	opMs := ms(time.Since(t0))
	runtime.ReadMemStats(&after)
	rssAfter := rssKiB()

	keepInt := 0
	if *keep {
		keepInt = 1
	}
	fmt.Printf("seed-scenario threads=%d entries=%d value_bytes=%d keep=%d via=go"+
		" fill_ms=%.1f rss_fill_kib=%d free_ms=%.1f rss_free_kib=%d"+
		" op_ms=%.3f released_bytes=%d rss_after_kib=%d\n",
		*threads, *entries, *valueBytes, keepInt,
		fillMs, rssFill, freeMs, rssFree,
		opMs, int64(after.HeapReleased)-int64(before.HeapReleased), rssAfter)
	runtime.KeepAlive(kept)
}
