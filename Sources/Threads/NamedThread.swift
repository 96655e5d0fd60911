#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// Starts a long-lived thread that `top -H`, gdb and /proc show by name.
///
/// Foundation's `Thread.current.name = …` only reaches the kernel when the
/// creating thread has already stored the new thread's handle, which races with
/// the new thread's first instructions; when it loses, the thread keeps the
/// name Linux copied from its creator (an event loop's "NIO-SGLTN-…"). The
/// thread names itself through /proc/thread-self/comm instead
/// (pthread_setname_np is not visible to Swift through Glibc).
public func detachNamedThread(_ name: String, _ body: @escaping @Sendable () -> Void) {
    Thread.detachNewThread {
        nameCurrentThread(name)
        body()
    }
}

/// Best effort: a thread without a name still works. The kernel keeps 15 bytes.
func nameCurrentThread(_ name: String) {
    let fd = open("/proc/thread-self/comm", O_WRONLY | O_CLOEXEC)
    guard fd >= 0 else { return }
    let bytes = Array(name.utf8.prefix(15))
    _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    close(fd)
}
