package cwlogs

import (
	"encoding/json"
	"strconv"
	"strings"
	"unicode"
)

// Matcher says whether an event's message matches a filter pattern.
type Matcher interface {
	Match(message string) bool
}

// ParseFilterPattern reads a CloudWatch Logs filter pattern:
//
//   - "" matches every event;
//   - terms and quoted phrases (ERROR "disk full") match events that hold
//     each of them (case-sensitive);
//   - terms prefixed with ? (?ERROR ?WARN) match events holding any one;
//   - a term prefixed with - (ERROR -retrying) excludes events holding it;
//   - { $.field = value } matches JSON events by a field's value, with =,
//     !=, <, <=, >, >= (numbers), * wildcards in string values, selectors
//     such as $.a.b[0], and && and || with parentheses.
//
// A pattern it cannot read is an InvalidParameterException that says why.
func ParseFilterPattern(pattern string) (Matcher, error) {
	p := strings.TrimSpace(pattern)
	switch {
	case p == "":
		return matchAll{}, nil
	case strings.HasPrefix(p, "{"):
		return parseJSONPattern(p)
	case strings.HasPrefix(p, "["):
		return nil, invalid("filter pattern %q: space-delimited patterns ([a, b, ...]) are not supported; use terms, quoted phrases, ?alternatives or { $.field = value }", pattern)
	}
	return parseTerms(p)
}

type matchAll struct{}

func (matchAll) Match(string) bool { return true }

// termMatcher is a pattern of terms.
type termMatcher struct {
	all, any, none []string
}

func (m termMatcher) Match(msg string) bool {
	for _, t := range m.all {
		if !strings.Contains(msg, t) {
			return false
		}
	}
	for _, t := range m.none {
		if strings.Contains(msg, t) {
			return false
		}
	}
	if len(m.any) == 0 {
		return true
	}
	for _, t := range m.any {
		if strings.Contains(msg, t) {
			return true
		}
	}
	return false
}

func parseTerms(p string) (Matcher, error) {
	var m termMatcher
	for i := 0; i < len(p); {
		if p[i] == ' ' || p[i] == '\t' {
			i++
			continue
		}
		kind := byte(0)
		if p[i] == '?' || p[i] == '-' {
			kind = p[i]
			i++
		}
		var term string
		if i < len(p) && p[i] == '"' {
			end := strings.IndexByte(p[i+1:], '"')
			if end < 0 {
				return nil, invalid("filter pattern %q: a quoted phrase is not closed with \"", p)
			}
			term = p[i+1 : i+1+end]
			i += end + 2
		} else {
			j := i
			for j < len(p) && p[j] != ' ' && p[j] != '\t' {
				j++
			}
			term = p[i:j]
			i = j
			if strings.ContainsAny(term, "\"{}[]") {
				return nil, invalid("filter pattern %q: term %q holds characters that must be quoted (\"...\")", p, term)
			}
		}
		if term == "" {
			return nil, invalid("filter pattern %q: an empty term after %q", p, string(kind))
		}
		switch kind {
		case '?':
			m.any = append(m.any, term)
		case '-':
			m.none = append(m.none, term)
		default:
			m.all = append(m.all, term)
		}
	}
	return m, nil
}

// jsonExpr is a node of a { ... } pattern.
type jsonExpr interface {
	eval(doc any) bool
}

type jsonPattern struct{ expr jsonExpr }

func (p jsonPattern) Match(msg string) bool {
	var doc any
	if err := json.Unmarshal([]byte(msg), &doc); err != nil {
		return false
	}
	return p.expr.eval(doc)
}

type andExpr struct{ l, r jsonExpr }
type orExpr struct{ l, r jsonExpr }

func (e andExpr) eval(d any) bool { return e.l.eval(d) && e.r.eval(d) }
func (e orExpr) eval(d any) bool  { return e.l.eval(d) || e.r.eval(d) }

// cmpExpr compares the value a selector finds with a literal.
type cmpExpr struct {
	sel    []any // string keys and int indexes
	op     string
	str    string
	num    float64
	isNum  bool
	isNull bool
	isBool *bool
}

func (e cmpExpr) eval(doc any) bool {
	v, ok := selectPath(doc, e.sel)
	if !ok {
		return false
	}
	var res bool
	switch {
	case e.isNull:
		res = v == nil
	case e.isBool != nil:
		b, isB := v.(bool)
		res = isB && b == *e.isBool
	case e.isNum:
		f, isF := v.(float64)
		if !isF {
			return false
		}
		switch e.op {
		case "<":
			return f < e.num
		case "<=":
			return f <= e.num
		case ">":
			return f > e.num
		case ">=":
			return f >= e.num
		}
		res = f == e.num
	default:
		var s string
		switch x := v.(type) {
		case string:
			s = x
		case float64:
			s = strconv.FormatFloat(x, 'f', -1, 64)
		case bool:
			s = strconv.FormatBool(x)
		default:
			return false
		}
		res = wildcard(e.str, s)
	}
	if e.op == "!=" {
		return !res
	}
	return res
}

func selectPath(doc any, sel []any) (any, bool) {
	v := doc
	for _, s := range sel {
		switch k := s.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil, false
			}
			if v, ok = m[k]; !ok {
				return nil, false
			}
		case int:
			a, ok := v.([]any)
			if !ok || k >= len(a) {
				return nil, false
			}
			v = a[k]
		}
	}
	return v, true
}

// jsonParser reads a { ... } pattern.
type jsonParser struct {
	src string
	s   string // what is left
}

func parseJSONPattern(p string) (Matcher, error) {
	if !strings.HasSuffix(p, "}") {
		return nil, invalid("filter pattern %q: a JSON pattern must end with }", p)
	}
	jp := &jsonParser{src: p, s: strings.TrimSpace(p[1 : len(p)-1])}
	e, err := jp.or()
	if err != nil {
		return nil, err
	}
	if jp.s != "" {
		return nil, jp.fail("unexpected %q", jp.s)
	}
	return jsonPattern{e}, nil
}

func (p *jsonParser) fail(format string, args ...any) error {
	args = append([]any{p.src}, args...)
	return invalid("filter pattern %q: "+format+"; a JSON pattern reads { $.field = value }, with =, !=, <, <=, >, >=, && and ||", args...)
}

func (p *jsonParser) skip() { p.s = strings.TrimLeftFunc(p.s, unicode.IsSpace) }

func (p *jsonParser) eat(tok string) bool {
	p.skip()
	if strings.HasPrefix(p.s, tok) {
		p.s = p.s[len(tok):]
		return true
	}
	return false
}

func (p *jsonParser) or() (jsonExpr, error) {
	l, err := p.and()
	if err != nil {
		return nil, err
	}
	for p.eat("||") {
		r, err := p.and()
		if err != nil {
			return nil, err
		}
		l = orExpr{l, r}
	}
	return l, nil
}

func (p *jsonParser) and() (jsonExpr, error) {
	l, err := p.unit()
	if err != nil {
		return nil, err
	}
	for p.eat("&&") {
		r, err := p.unit()
		if err != nil {
			return nil, err
		}
		l = andExpr{l, r}
	}
	return l, nil
}

func (p *jsonParser) unit() (jsonExpr, error) {
	if p.eat("(") {
		e, err := p.or()
		if err != nil {
			return nil, err
		}
		if !p.eat(")") {
			return nil, p.fail("a ( is not closed")
		}
		return e, nil
	}
	return p.comparison()
}

func (p *jsonParser) comparison() (jsonExpr, error) {
	p.skip()
	if !strings.HasPrefix(p.s, "$") {
		return nil, p.fail("expected a selector starting with $ at %q", p.s)
	}
	i := 1
	for i < len(p.s) && (p.s[i] == '.' || p.s[i] == '[' || p.s[i] == ']' || p.s[i] == '_' || p.s[i] == '-' ||
		unicode.IsLetter(rune(p.s[i])) || unicode.IsDigit(rune(p.s[i]))) {
		i++
	}
	sel, err := p.selector(p.s[1:i])
	if err != nil {
		return nil, err
	}
	p.s = p.s[i:]
	e := cmpExpr{sel: sel}
	for _, op := range []string{"!=", "<=", ">=", "=", "<", ">"} {
		if p.eat(op) {
			e.op = op
			break
		}
	}
	if e.op == "" {
		return nil, p.fail("expected =, !=, <, <=, > or >= at %q", p.s)
	}
	p.skip()
	switch {
	case strings.HasPrefix(p.s, "\""):
		end := strings.IndexByte(p.s[1:], '"')
		if end < 0 {
			return nil, p.fail("a quoted value is not closed")
		}
		e.str = p.s[1 : 1+end]
		p.s = p.s[end+2:]
	default:
		j := 0
		for j < len(p.s) && !unicode.IsSpace(rune(p.s[j])) && p.s[j] != ')' && p.s[j] != '&' && p.s[j] != '|' {
			j++
		}
		word := p.s[:j]
		p.s = p.s[j:]
		if word == "" {
			return nil, p.fail("a value is missing after %s", e.op)
		}
		if f, err := strconv.ParseFloat(word, 64); err == nil {
			e.num, e.isNum = f, true
		} else if word == "NULL" {
			e.isNull = true
		} else if b, err := strconv.ParseBool(strings.ToLower(word)); err == nil && (word == "true" || word == "false" || word == "TRUE" || word == "FALSE") {
			e.isBool = &b
		} else {
			e.str = word
		}
	}
	if !e.isNum && e.op != "=" && e.op != "!=" {
		return nil, p.fail("%s compares numbers only", e.op)
	}
	return e, nil
}

// selector reads ".a.b[0]" into keys and indexes.
func (p *jsonParser) selector(s string) ([]any, error) {
	var out []any
	for s != "" {
		switch s[0] {
		case '.':
			j := 1
			for j < len(s) && s[j] != '.' && s[j] != '[' {
				j++
			}
			if j == 1 {
				return nil, p.fail("an empty field name in the selector")
			}
			out = append(out, s[1:j])
			s = s[j:]
		case '[':
			end := strings.IndexByte(s, ']')
			n, err := strconv.Atoi(s[1:max(end, 1)])
			if end < 0 || err != nil || n < 0 {
				return nil, p.fail("a selector's index must be [n], n a non-negative integer")
			}
			out = append(out, n)
			s = s[end+1:]
		default:
			return nil, p.fail("a selector continues with .field or [n], not %q", s)
		}
	}
	if len(out) == 0 {
		return nil, p.fail("the selector $ names no field")
	}
	return out, nil
}

// wildcard matches s against pattern, where * stands for any run of
// characters.
func wildcard(pattern, s string) bool {
	parts := strings.Split(pattern, "*")
	if len(parts) == 1 {
		return s == pattern
	}
	if !strings.HasPrefix(s, parts[0]) {
		return false
	}
	s = s[len(parts[0]):]
	for _, mid := range parts[1 : len(parts)-1] {
		i := strings.Index(s, mid)
		if i < 0 {
			return false
		}
		s = s[i+len(mid):]
	}
	return strings.HasSuffix(s, parts[len(parts)-1])
}
