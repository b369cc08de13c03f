package api

import "encoding/json"

// List is a list member that AWS answers even when it is empty: it encodes
// nil as [] (never null, never left out), so that "taskArns": [] reaches
// clients that count it (aws ecs list-tasks --query 'length(taskArns)').
// It converts freely to and from []T.
type List[T any] []T

// MarshalJSON encodes the list, nil as [].
func (l List[T]) MarshalJSON() ([]byte, error) {
	if l == nil {
		return []byte("[]"), nil
	}
	return json.Marshal([]T(l))
}
