// Command spoof is a test program for task images. "spoof listen PORT"
// prints the payload of every UDP datagram it receives; "spoof send DSTIP
// PORT FORGEDIP" writes raw Ethernet frames on eth0 (CAP_NET_RAW, which
// tasks have by default) carrying UDP datagrams to DSTIP: one with a
// forged source MAC, one with the forged source address FORGEDIP, then a
// genuine one ("genuine"), which shows the path works. The destination MAC
// is Vessel's for DSTIP (0a:58 and the address).
package main

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Println("spoof:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	switch {
	case len(args) == 2 && args[0] == "listen":
		pc, err := net.ListenPacket("udp4", ":"+args[1])
		if err != nil {
			return err
		}
		fmt.Println("listening")
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return err
			}
			fmt.Printf("received %q from %s\n", buf[:n], from)
		}
	case len(args) == 4 && args[0] == "send":
		return send(args[1], args[2], args[3])
	}
	return fmt.Errorf("usage: spoof listen PORT | spoof send DSTIP PORT FORGEDIP")
}

func send(dstArg, portArg, forgedArg string) error {
	dst, err := netip.ParseAddr(dstArg)
	if err != nil {
		return err
	}
	forged, err := netip.ParseAddr(forgedArg)
	if err != nil {
		return err
	}
	var port uint16
	fmt.Sscan(portArg, &port)
	ifc, err := net.InterfaceByName("eth0")
	if err != nil {
		return err
	}
	addrs, err := ifc.Addrs()
	if err != nil || len(addrs) == 0 {
		return fmt.Errorf("eth0 has no address: %v", err)
	}
	own, _ := netip.AddrFromSlice(addrs[0].(*net.IPNet).IP.To4())
	d := dst.As4()
	dstMAC := net.HardwareAddr{0x0a, 0x58, d[0], d[1], d[2], d[3]}
	fd, err := syscall.Socket(syscall.AF_PACKET, syscall.SOCK_RAW, 0)
	if err != nil {
		return fmt.Errorf("packet socket: %w", err)
	}
	defer syscall.Close(fd)
	to := &syscall.SockaddrLinklayer{Ifindex: ifc.Index, Halen: 6}
	copy(to.Addr[:], dstMAC)
	for _, f := range []struct {
		mac     net.HardwareAddr
		src     netip.Addr
		payload string
	}{
		{net.HardwareAddr{0x0a, 0x58, 1, 2, 3, 4}, own, "forged-mac"},
		{ifc.HardwareAddr, forged, "forged-ip"},
		{ifc.HardwareAddr, own, "genuine"},
	} {
		if err := syscall.Sendto(fd, frame(dstMAC, f.mac, f.src, dst, port, f.payload), 0, to); err != nil {
			return fmt.Errorf("send %s: %w", f.payload, err)
		}
		fmt.Println("sent", f.payload, "from", f.mac, f.src)
	}
	return nil
}

func frame(dstMAC, srcMAC net.HardwareAddr, src, dst netip.Addr, port uint16, payload string) []byte {
	udp := make([]byte, 8+len(payload))
	binary.BigEndian.PutUint16(udp[0:], 40000)
	binary.BigEndian.PutUint16(udp[2:], port)
	binary.BigEndian.PutUint16(udp[4:], uint16(len(udp)))
	copy(udp[8:], payload) // checksum 0: none, as IPv4 allows
	ip := make([]byte, 20)
	ip[0], ip[8], ip[9] = 0x45, 64, syscall.IPPROTO_UDP
	binary.BigEndian.PutUint16(ip[2:], uint16(20+len(udp)))
	binary.BigEndian.PutUint16(ip[6:], 0x4000)
	s, d := src.As4(), dst.As4()
	copy(ip[12:], s[:])
	copy(ip[16:], d[:])
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(ip[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(ip[10:], ^uint16(sum))
	out := append(append([]byte{}, dstMAC...), srcMAC...)
	out = append(out, 0x08, 0x00)
	return append(append(out, ip...), udp...)
}
