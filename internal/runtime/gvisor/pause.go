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
	switch goruntime.GOARCH {
	case "amd64":
		return tinyELF(emX8664, []byte{
			0xb8, 0x22, 0x00, 0x00, 0x00, // mov eax, 34 (pause)
			0x0f, 0x05, // syscall
			0xeb, 0xf7, // jmp back to mov
		}), true
	case "arm64":
		return tinyELF(emAArch64, arm64Code(
			0xd2800000, // mov x0, #0
			0xd2800001, // mov x1, #0
			0xd2800002, // mov x2, #0
			0xd2800003, // mov x3, #0
			0xd2800928, // mov x8, #73 (ppoll)
			0xd4000001, // svc #0
			0x17fffffa, // b back to the first mov
		)), true
	}
	return nil, false
}

// sethostnameELF returns a tiny static executable for the host's
// architecture that sets the hostname to its first argument
// (sethostname(2)) and exits with the call's error number, 0 on
// success. It lies beside the pause program in the root container's file
// system, where a claim runs it (with CAP_SYS_ADMIN, in the sandbox's
// own kernel) to give a warm sandbox its task's hostname; ok is false on
// other architectures.
func sethostnameELF() (elf []byte, ok bool) {
	switch goruntime.GOARCH {
	case "amd64":
		return tinyELF(emX8664, []byte{
			0x48, 0x8b, 0x7c, 0x24, 0x10, // mov rdi, [rsp+16] (argv[1])
			0x31, 0xf6, // xor esi, esi
			0x80, 0x3c, 0x37, 0x00, // loop: cmp byte [rdi+rsi], 0
			0x74, 0x05, // je done
			0x48, 0xff, 0xc6, // inc rsi
			0xeb, 0xf5, // jmp loop
			0xb8, 0xaa, 0x00, 0x00, 0x00, // done: mov eax, 170 (sethostname)
			0x0f, 0x05, // syscall
			0x89, 0xc7, // mov edi, eax
			0xf7, 0xdf, // neg edi
			0xb8, 0x3c, 0x00, 0x00, 0x00, // mov eax, 60 (exit)
			0x0f, 0x05, // syscall
		}), true
	case "arm64":
		return tinyELF(emAArch64, arm64Code(
			0xf9400be0, // ldr x0, [sp, #16] (argv[1])
			0xd2800001, // mov x1, #0
			0x38616802, // loop: ldrb w2, [x0, x1]
			0x34000062, // cbz w2, done
			0x91000421, // add x1, x1, #1
			0x17fffffd, // b loop
			0xd2801428, // done: mov x8, #161 (sethostname)
			0xd4000001, // svc #0
			0xcb0003e0, // neg x0, x0
			0xd2800ba8, // mov x8, #93 (exit)
			0xd4000001, // svc #0
		)), true
	}
	return nil, false
}

// The ELF machines of the architectures tinyELF is used for.
const (
	emX8664   = 62
	emAArch64 = 183
)

// arm64Code is instructions in memory order.
func arm64Code(ins ...uint32) []byte {
	var code []byte
	for _, i := range ins {
		code = binary.LittleEndian.AppendUint32(code, i)
	}
	return code
}

// tinyELF is a static executable for machine whose one loadable segment,
// the whole file, is read and executed from its entry point, code.
func tinyELF(machine uint16, code []byte) []byte {
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
	return append(b, code...)
}
