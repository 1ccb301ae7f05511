// Package demo runs the sample bookstore API and the gateway in front of it,
// for moat demo and for tests that need a realistic upstream.
package demo

import (
	"encoding/json"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/moat-gateway/moat/examples"
)

// Book is a book of the sample API.
type Book struct {
	ID     string `json:"id"`
	Title  string `json:"title"`
	Author string `json:"author"`
	Year   int    `json:"year,omitempty"`
}

// Bookstore is the sample API described by examples/bookstore.openapi.yaml.
// It is safe for concurrent use.
type Bookstore struct {
	mu    sync.Mutex
	books map[string]Book
	next  int
}

// NewBookstore returns a bookstore with a few books.
func NewBookstore() *Bookstore {
	b := &Bookstore{books: map[string]Book{}}
	for _, bk := range []Book{
		{Title: "The Go Programming Language", Author: "Donovan, Kernighan", Year: 2015},
		{Title: "Security Engineering", Author: "Ross Anderson", Year: 2020},
		{Title: "Designing Data-Intensive Applications", Author: "Martin Kleppmann", Year: 2017},
	} {
		b.add(bk)
	}
	return b
}

func (b *Bookstore) add(bk Book) Book {
	b.next++
	bk.ID = strconv.Itoa(b.next)
	b.books[bk.ID] = bk
	return bk
}

// Handler returns the API's HTTP handler. Like many real services it
// announces itself in Server and X-Powered-By headers, which the gateway
// removes.
func (b *Bookstore) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /openapi.yaml", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/yaml")
		w.Write(examples.BookstoreOpenAPI)
	})
	mux.HandleFunc("GET /books", func(w http.ResponseWriter, r *http.Request) {
		b.mu.Lock()
		out := make([]Book, 0, len(b.books))
		for _, bk := range b.books {
			out = append(out, bk)
		}
		b.mu.Unlock()
		sort.Slice(out, func(i, j int) bool {
			return len(out[i].ID) < len(out[j].ID) || len(out[i].ID) == len(out[j].ID) && out[i].ID < out[j].ID
		})
		writeJSON(w, http.StatusOK, out)
	})
	mux.HandleFunc("GET /books/{id}", func(w http.ResponseWriter, r *http.Request) {
		b.mu.Lock()
		bk, ok := b.books[r.PathValue("id")]
		b.mu.Unlock()
		if !ok {
			writeJSON(w, http.StatusNotFound, map[string]string{"error": "no such book"})
			return
		}
		writeJSON(w, http.StatusOK, bk)
	})
	mux.HandleFunc("POST /books", func(w http.ResponseWriter, r *http.Request) {
		var in Book
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&in); err != nil || strings.TrimSpace(in.Title) == "" || strings.TrimSpace(in.Author) == "" {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "a book needs a title and an author"})
			return
		}
		b.mu.Lock()
		if len(b.books) >= 10000 {
			b.mu.Unlock()
			writeJSON(w, http.StatusInsufficientStorage, map[string]string{"error": "the shelf is full"})
			return
		}
		bk := b.add(Book{Title: in.Title, Author: in.Author, Year: in.Year})
		b.mu.Unlock()
		writeJSON(w, http.StatusCreated, bk)
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Server", "bookstore/1.0 (demo)")
		w.Header().Set("X-Powered-By", "net/http")
		mux.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
