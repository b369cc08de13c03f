// Package sockopt holds the socket options Vessel's listeners share, for
// net.ListenConfig's Control: FreeBind lets the agent's DNS server and task
// metadata endpoint bind a subnet's gateway address before its bridge
// exists.
package sockopt
