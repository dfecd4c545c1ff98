// Command amoracle answers matcher questions with Alertmanager's own code, for the
// differential tests (tests/integration/test_matchers_differential.py). Built and cached by
// hack/amoracle/build.sh from the github.com/prometheus/alertmanager module pinned in go.mod.
//
// It reads one JSON object per line on stdin and writes one JSON object per line on stdout,
// in order, flushing after each, so one process serves a whole test session:
//
//	{"text": "<matchers>", "labels": [{"k": "v"}, ...]}
//	  -> {"classic": P, "utf8": P, "fallback": P & {"warning": "", "suggestion": ""},
//	      "verdicts": [bool, ...]}
//	  P = {"ok": bool, "error": "...", "matchers": [{"name","op","value","string"}]}
//	  classic:  pkg/labels.ParseMatchers
//	  utf8:     matcher/parse.Matchers
//	  fallback: matcher/compat.FallbackMatchersParser (Alertmanager's default mode), with the
//	            warning it logs: "incompatible" (only the classic parser accepts the text) or
//	            "disagreement" (both accept it and read it differently)
//	  verdicts: the fallback matchers' Matches() on each label set (absent when it failed)
//	{"regex": "<pattern>", "inputs": ["...", ...]}
//	  -> {"ok": bool, "error": "...", "matches": [bool, ...]}
//	  via pkg/labels.NewMatcher(MatchRegexp, ...): regexp.Compile("^(?:" + pattern + ")$")
//	{"unicode": true}
//	  -> {"version": "15.0.0", "categories": [...], "scripts": [...], "aliases": {...}}
//	  the \p{...} names Go's regexp/syntax knows (the Go release matters, not Alertmanager's)
//
// A line that is not valid JSON ends the process with exit code 2.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strings"
	"unicode"

	"github.com/prometheus/alertmanager/matcher/compat"
	"github.com/prometheus/alertmanager/matcher/parse"
	"github.com/prometheus/alertmanager/pkg/labels"
	"github.com/prometheus/common/model"
)

type request struct {
	Text    *string             `json:"text"`
	Labels  []map[string]string `json:"labels"`
	Regex   *string             `json:"regex"`
	Inputs  []string            `json:"inputs"`
	Unicode bool                `json:"unicode"`
}

type matcher struct {
	Name   string `json:"name"`
	Op     string `json:"op"`
	Value  string `json:"value"`
	String string `json:"string"`
}

type parsed struct {
	OK         bool      `json:"ok"`
	Error      string    `json:"error,omitempty"`
	Matchers   []matcher `json:"matchers"`
	Warning    string    `json:"warning,omitempty"`
	Suggestion string    `json:"suggestion,omitempty"`
}

type parseReply struct {
	Classic  parsed `json:"classic"`
	UTF8     parsed `json:"utf8"`
	Fallback parsed `json:"fallback"`
	Verdicts []bool `json:"verdicts,omitempty"`
}

// unicodeReply lists the \p{...} names Go's regexp/syntax looks up (unicodeTable): the
// general categories, the scripts and the category aliases of the Go release it is built with.
type unicodeReply struct {
	Version    string            `json:"version"`
	Categories []string          `json:"categories"`
	Scripts    []string          `json:"scripts"`
	Aliases    map[string]string `json:"aliases"`
	// Tables: every category's and script's code points as [lo, hi] ranges.
	Tables map[string][][2]rune `json:"tables"`
}

func ranges(table *unicode.RangeTable) [][2]rune {
	out := [][2]rune{}
	add := func(lo, hi, stride rune) {
		for r := lo; r <= hi; r += stride {
			if n := len(out); n > 0 && out[n-1][1] == r-1 {
				out[n-1][1] = r
			} else {
				out = append(out, [2]rune{r, r})
			}
		}
	}
	for _, r := range table.R16 {
		add(rune(r.Lo), rune(r.Hi), rune(r.Stride))
	}
	for _, r := range table.R32 {
		add(rune(r.Lo), rune(r.Hi), rune(r.Stride))
	}
	return out
}

func answerUnicode() unicodeReply {
	tables := map[string][][2]rune{}
	for name, table := range unicode.Categories {
		tables[name] = ranges(table)
	}
	for name, table := range unicode.Scripts {
		tables[name] = ranges(table)
	}
	return unicodeReply{
		Version:    unicode.Version,
		Categories: slices.Sorted(maps.Keys(unicode.Categories)),
		Scripts:    slices.Sorted(maps.Keys(unicode.Scripts)),
		Aliases:    unicode.CategoryAliases,
		Tables:     tables,
	}
}

type regexReply struct {
	OK      bool   `json:"ok"`
	Error   string `json:"error,omitempty"`
	Matches []bool `json:"matches,omitempty"`
}

// recorder is a slog handler keeping the last warning the fallback parser logged.
type recorder struct {
	message    string
	suggestion string
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *recorder) WithGroup(string) slog.Handler            { return r }
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	if rec.Level < slog.LevelWarn {
		return nil
	}
	r.message = rec.Message
	rec.Attrs(func(a slog.Attr) bool {
		if a.Key == "suggestion" {
			r.suggestion = a.Value.String()
		}
		return true
	})
	return nil
}

func convert(ms []*labels.Matcher, err error) parsed {
	if err != nil {
		return parsed{Error: err.Error(), Matchers: []matcher{}}
	}
	out := parsed{OK: true, Matchers: []matcher{}}
	for _, m := range ms {
		out.Matchers = append(out.Matchers, matcher{m.Name, m.Type.String(), m.Value, m.String()})
	}
	return out
}

func answerText(req request) parseReply {
	text := *req.Text
	var reply parseReply
	reply.Classic = convert(labels.ParseMatchers(text))
	reply.UTF8 = convert(parse.Matchers(text))

	rec := &recorder{}
	fallback, err := compat.FallbackMatchersParser(slog.New(rec))(text, "oracle")
	reply.Fallback = convert(fallback, err)
	switch {
	case rec.message == "":
	case strings.Contains(rec.message, "disagreement"):
		reply.Fallback.Warning = "disagreement"
	case strings.Contains(rec.message, "incompatible"):
		reply.Fallback.Warning = "incompatible"
		reply.Fallback.Suggestion = rec.suggestion
	default:
		reply.Fallback.Warning = rec.message
	}
	if err == nil {
		for _, set := range req.Labels {
			lset := model.LabelSet{}
			for k, v := range set {
				lset[model.LabelName(k)] = model.LabelValue(v)
			}
			reply.Verdicts = append(reply.Verdicts, fallback.Matches(lset))
		}
	}
	return reply
}

func answerRegex(req request) regexReply {
	m, err := labels.NewMatcher(labels.MatchRegexp, "x", *req.Regex)
	if err != nil {
		return regexReply{Error: err.Error()}
	}
	reply := regexReply{OK: true, Matches: []bool{}}
	for _, in := range req.Inputs {
		reply.Matches = append(reply.Matches, m.Matches(in))
	}
	return reply
}

func main() {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 64<<20)
	out := bufio.NewWriter(os.Stdout)
	enc := json.NewEncoder(out)
	enc.SetEscapeHTML(false)
	for in.Scan() {
		var req request
		if err := json.Unmarshal(in.Bytes(), &req); err != nil {
			fmt.Fprintf(os.Stderr, "amoracle: bad request: %v\n", err)
			os.Exit(2)
		}
		var err error
		switch {
		case req.Text != nil:
			err = enc.Encode(answerText(req))
		case req.Regex != nil:
			err = enc.Encode(answerRegex(req))
		case req.Unicode:
			err = enc.Encode(answerUnicode())
		default:
			fmt.Fprintln(os.Stderr, `amoracle: a request needs "text" or "regex"`)
			os.Exit(2)
		}
		if err == nil {
			err = out.Flush()
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "amoracle: %v\n", err)
			os.Exit(1)
		}
	}
	if err := in.Err(); err != nil {
		fmt.Fprintf(os.Stderr, "amoracle: %v\n", err)
		os.Exit(1)
	}
}
