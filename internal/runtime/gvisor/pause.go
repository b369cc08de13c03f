package gvisor

import (
	"encoding/binary"
	goruntime "runtime"
)

// pauseELF returns a tiny static executable for the host's architecture
// that sleeps until it is killed (pause(2) in a loop on amd64, ppoll(2)
// with no descriptors on arm64): the process of each sandbox's root
// container. It is written out at Create, so Vessel needs no pause image
// and no build step; ok is false on other architectures.
func pauseELF() (elf []byte, ok bool) {
	var machine uint16
	var code []byte
	switch goruntime.GOARCH {
	case "amd64":
		machine = 62 // EM_X86_64
		code = []byte{
			0xb8, 0x22, 0x00, 0x00, 0x00, // mov eax, 34 (pause)
			0x0f, 0x05, // syscall
			0xeb, 0xf7, // jmp back to mov
		}
	case "arm64":
		machine = 183 // EM_AARCH64
		for _, ins := range []uint32{
			0xd2800000, // mov x0, #0
			0xd2800001, // mov x1, #0
			0xd2800002, // mov x2, #0
			0xd2800003, // mov x3, #0
			0xd2800928, // mov x8, #73 (ppoll)
			0xd4000001, // svc #0
			0x17fffffa, // b back to the first mov
		} {
			code = binary.LittleEndian.AppendUint32(code, ins)
		}
	default:
		return nil, false
	}
	const base, ehsize, phsize = 0x400000, 64, 56
	size := uint64(ehsize + phsize + len(code))
	le := binary.LittleEndian
	b := []byte{0x7f, 'E', 'L', 'F', 2 /* 64-bit */, 1 /* little endian */, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	b = le.AppendUint16(b, 2) // ET_EXEC
	b = le.AppendUint16(b, machine)
	b = le.AppendUint32(b, 1)                  // EV_CURRENT
	b = le.AppendUint64(b, base+ehsize+phsize) // entry
	b = le.AppendUint64(b, ehsize)             // program headers
	b = le.AppendUint64(b, 0)                  // no section headers
	b = le.AppendUint32(b, 0)                  // flags
	b = le.AppendUint16(b, ehsize)
	b = le.AppendUint16(b, phsize)
	b = le.AppendUint16(b, 1) // one program header
	b = le.AppendUint16(b, 0)
	b = le.AppendUint16(b, 0)
	b = le.AppendUint16(b, 0)
	// PT_LOAD of the whole file, read and execute.
	b = le.AppendUint32(b, 1)
	b = le.AppendUint32(b, 5)
	b = le.AppendUint64(b, 0)
	b = le.AppendUint64(b, base)
	b = le.AppendUint64(b, base)
	b = le.AppendUint64(b, size)
	b = le.AppendUint64(b, size)
	b = le.AppendUint64(b, 0x1000)
	return append(b, code...), true
}
