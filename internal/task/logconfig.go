package task

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"vessel.dev/vessel/internal/errdefs"
)

// The awslogs log driver's options, as ECS names them.
const (
	LogDriverAWSLogs         = "awslogs"
	AWSLogsGroup             = "awslogs-group"
	AWSLogsRegion            = "awslogs-region"
	AWSLogsStreamPrefix      = "awslogs-stream-prefix"
	AWSLogsCreateGroup       = "awslogs-create-group"
	AWSLogsDatetimeFormat    = "awslogs-datetime-format"
	AWSLogsMultilinePattern  = "awslogs-multiline-pattern"
	AWSLogsMode              = "mode"
	AWSLogsMaxBufferSize     = "max-buffer-size"
	LogModeBlocking          = "blocking"
	LogModeNonBlocking       = "non-blocking"
	DefaultLogMaxBufferBytes = 1 << 20
)

var awslogsOptions = []string{AWSLogsGroup, AWSLogsRegion, AWSLogsStreamPrefix, AWSLogsCreateGroup,
	AWSLogsDatetimeFormat, AWSLogsMultilinePattern, AWSLogsMode, AWSLogsMaxBufferSize}

// LogConfig is a container's logConfiguration with the awslogs driver:
// the host agent ships the container's output to the control plane's log
// store, as events of stream StreamName in Group.
//
// Mode and MaxBufferSize are kept as given: the agent ships from the
// container's log file, which is the buffer, so output is never blocked
// nor dropped by shipping in either mode.
type LogConfig struct {
	Group        string `json:"group"`
	Region       string `json:"region"`
	StreamPrefix string `json:"streamPrefix"`
	CreateGroup  bool   `json:"createGroup,omitempty"`
	// DatetimeFormat (strftime) or MultilinePattern (a regular
	// expression), at most one, start a new event: other lines join the
	// event before them.
	DatetimeFormat   string `json:"datetimeFormat,omitempty"`
	MultilinePattern string `json:"multilinePattern,omitempty"`
	Mode             string `json:"mode,omitempty"`
	MaxBufferSize    int64  `json:"maxBufferSize,omitempty"`
}

var (
	regionRE    = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-\d$`)
	logGroupRE  = regexp.MustCompile(`^[A-Za-z0-9._/#-]{1,512}$`)
	bufferSizeR = regexp.MustCompile(`^(\d+)\s*([kmgKMG]?)(i?[bB])?$`)
)

// ParseAWSLogs reads and checks the options of an awslogs
// logConfiguration. Errors are of kind errdefs.ErrInvalidArgument and say
// which option is wrong and what is accepted.
func ParseAWSLogs(options map[string]string) (*LogConfig, error) {
	for k := range options {
		if !slices.Contains(awslogsOptions, k) {
			return nil, errdefs.InvalidArgument("logConfiguration option %q is not supported with the awslogs driver; accepted options: %s",
				k, strings.Join(awslogsOptions, ", "))
		}
	}
	lc := &LogConfig{Group: options[AWSLogsGroup], Region: options[AWSLogsRegion], StreamPrefix: options[AWSLogsStreamPrefix],
		DatetimeFormat: options[AWSLogsDatetimeFormat], MultilinePattern: options[AWSLogsMultilinePattern], Mode: options[AWSLogsMode]}
	switch {
	case lc.Group == "":
		return nil, errdefs.InvalidArgument("logConfiguration option %s is required with the awslogs driver: the log group to send the container's output to", AWSLogsGroup)
	case !logGroupRE.MatchString(lc.Group):
		return nil, errdefs.InvalidArgument("logConfiguration option %s %q is not a valid log group name: 1 to 512 letters, digits and . _ - / #", AWSLogsGroup, lc.Group)
	case lc.Region == "":
		return nil, errdefs.InvalidArgument("logConfiguration option %s is required with the awslogs driver, e.g. us-east-1", AWSLogsRegion)
	case !regionRE.MatchString(lc.Region):
		return nil, errdefs.InvalidArgument("logConfiguration option %s %q is not a region name such as us-east-1", AWSLogsRegion, lc.Region)
	case lc.StreamPrefix == "":
		return nil, errdefs.InvalidArgument("logConfiguration option %s is required with the awslogs driver on Fargate: streams are named prefix/container-name/task-id", AWSLogsStreamPrefix)
	case strings.ContainsAny(lc.StreamPrefix, ":*"):
		return nil, errdefs.InvalidArgument("logConfiguration option %s %q must not hold : or * (log stream names cannot)", AWSLogsStreamPrefix, lc.StreamPrefix)
	case lc.DatetimeFormat != "" && lc.MultilinePattern != "":
		return nil, errdefs.InvalidArgument("logConfiguration options %s and %s cannot both be set: give one", AWSLogsDatetimeFormat, AWSLogsMultilinePattern)
	}
	if v, ok := options[AWSLogsCreateGroup]; ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return nil, errdefs.InvalidArgument("logConfiguration option %s %q is not valid: accepted values are true, false", AWSLogsCreateGroup, v)
		}
		lc.CreateGroup = b
	}
	switch lc.Mode {
	case "", LogModeBlocking:
		if v, ok := options[AWSLogsMaxBufferSize]; ok {
			return nil, errdefs.InvalidArgument("logConfiguration option %s %q is only valid with mode %s", AWSLogsMaxBufferSize, v, LogModeNonBlocking)
		}
	case LogModeNonBlocking:
		lc.MaxBufferSize = DefaultLogMaxBufferBytes
		if v, ok := options[AWSLogsMaxBufferSize]; ok {
			n, err := parseBufferSize(v)
			if err != nil {
				return nil, errdefs.InvalidArgument("logConfiguration option %s %q is not a size such as 25m or 4MiB", AWSLogsMaxBufferSize, v)
			}
			lc.MaxBufferSize = n
		}
	default:
		return nil, errdefs.InvalidArgument("logConfiguration option %s %q is not valid: accepted values are %s, %s", AWSLogsMode, lc.Mode, LogModeBlocking, LogModeNonBlocking)
	}
	if _, err := lc.StartPattern(); err != nil {
		return nil, err
	}
	return lc, nil
}

// parseBufferSize reads a size as the log drivers' max-buffer-size:
// bytes, or k, m, g (powers of 1024) with an optional b or ib.
func parseBufferSize(v string) (int64, error) {
	m := bufferSizeR.FindStringSubmatch(strings.TrimSpace(v))
	if m == nil {
		return 0, fmt.Errorf("not a size")
	}
	n, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("not a positive size")
	}
	shift := map[string]uint{"": 0, "k": 10, "m": 20, "g": 30}[strings.ToLower(m[2])]
	if n > (1<<62)>>shift {
		return 0, fmt.Errorf("too large")
	}
	return n << shift, nil
}

// StreamName is the stream of a container's events, as ECS names it:
// prefix/container-name/task-id.
func (lc *LogConfig) StreamName(container, taskID string) string {
	return lc.StreamPrefix + "/" + container + "/" + taskID
}

// StartPattern is the expression that starts a new multi-line event: the
// multiline pattern as given, or the datetime format turned into an
// expression anchored at the line's start (as the awslogs driver does);
// nil when lines are events of their own.
func (lc *LogConfig) StartPattern() (*regexp.Regexp, error) {
	switch {
	case lc.MultilinePattern != "":
		re, err := regexp.Compile(lc.MultilinePattern)
		if err != nil {
			return nil, errdefs.InvalidArgument("logConfiguration option %s %q is not a valid regular expression: %v", AWSLogsMultilinePattern, lc.MultilinePattern, err)
		}
		return re, nil
	case lc.DatetimeFormat != "":
		expr, err := strftimeRegexp(lc.DatetimeFormat)
		if err == nil {
			var re *regexp.Regexp
			if re, err = regexp.Compile("^" + expr); err == nil {
				return re, nil
			}
		}
		return nil, errdefs.InvalidArgument("logConfiguration option %s %q is not valid: %v (accepted: text with strftime directives %s)",
			AWSLogsDatetimeFormat, lc.DatetimeFormat, err, strftimeDirectives())
	}
	return nil, nil
}

// strftimeToRegexp holds what each strftime directive the awslogs driver
// knows matches.
var strftimeToRegexp = map[byte]string{
	'a': `(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)`,
	'A': `(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)`,
	'b': `(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)`,
	'B': `(?:January|February|March|April|May|June|July|August|September|October|November|December)`,
	'd': `(?:0[1-9]|[1,2][0-9]|3[0,1])`,
	'f': `\d{6}`,
	'H': `(?:[0,1][0-9]|2[0-3])`,
	'I': `(?:0[0-9]|1[0-2])`,
	'j': `(?:0[0-9][1-9]|[1,2][0-9][0-9]|3[0-5][0-9]|36[0-6])`,
	'L': `\.\d{3}`,
	'm': `(?:0[1-9]|1[0-2])`,
	'M': `[0-5][0-9]`,
	'p': `[A,P]M`,
	'S': `[0-5][0-9]`,
	'U': `(?:[0-4][0-9]|5[0-3])`,
	'w': `[0-6]`,
	'W': `(?:[0-4][0-9]|5[0-3])`,
	'y': `\d{2}`,
	'Y': `\d{4}`,
	'z': `[+-]\d{4}`,
	'Z': `[A-Z]{1,4}T`,
	'%': `%`,
}

func strftimeDirectives() string {
	var ds []string
	for d := range strftimeToRegexp {
		ds = append(ds, "%"+string(d))
	}
	slices.Sort(ds)
	return strings.Join(ds, " ")
}

func strftimeRegexp(format string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(format); i++ {
		if format[i] != '%' {
			b.WriteString(regexp.QuoteMeta(format[i : i+1]))
			continue
		}
		if i+1 == len(format) {
			return "", fmt.Errorf("it ends with a lone %%")
		}
		i++
		re, ok := strftimeToRegexp[format[i]]
		if !ok {
			return "", fmt.Errorf("directive %%%c is not known", format[i])
		}
		b.WriteString(re)
	}
	return b.String(), nil
}
