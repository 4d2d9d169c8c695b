package prefetch

import (
	"fmt"
	"strings"
)

// maxExamples is how many names a group of failures lists.
const maxExamples = 3

// failureLog groups failures by cause (the error's text), in the order
// each cause first appeared. It is not safe for concurrent use.
type failureLog struct {
	// causes lists each cause once, in order of first appearance.
	causes []string
	// names maps a cause to the names of the files it failed.
	names map[string][]string
}

// add records that name failed with err.
func (l *failureLog) add(name string, err error) {
	cause := err.Error()
	if l.names == nil {
		l.names = make(map[string][]string)
	}
	if _, ok := l.names[cause]; !ok {
		l.causes = append(l.causes, cause)
	}
	l.names[cause] = append(l.names[cause], name)
}

// report writes one line per cause: "NAME: CAUSE" for a cause of one
// failure, else "N files failed: CAUSE (NAME, NAME, NAME and K more)".
func (l *failureLog) report(out *Progress) {
	for _, cause := range l.causes {
		names := l.names[cause]
		if len(names) == 1 {
			out.printf("%s: %s\n", names[0], cause)
			continue
		}
		examples := strings.Join(names[:min(len(names), maxExamples)], ", ")
		if more := len(names) - maxExamples; more > 0 {
			examples += fmt.Sprintf(" and %d more", more)
		}
		out.printf("%d files failed: %s (%s)\n", len(names), cause, examples)
	}
}
