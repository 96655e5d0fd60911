import NIOCore
import Synchronization

/// Counts what is in flight per key and makes the next one wait when a
/// key is at its limit (per-destination concurrency).
final class KeyedLimiter: Sendable {
    private struct Slot {
        var count = 0
        var waiters: [CheckedContinuation<Void, Never>] = []
    }

    private let slots = Mutex<[String: Slot]>([:])

    func acquire(_ key: String, limit: Int) async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let now = slots.withLock { s -> Bool in
                var slot = s[key] ?? Slot()
                defer { s[key] = slot }
                if slot.count < max(limit, 1) {
                    slot.count += 1
                    return true
                }
                slot.waiters.append(c)
                return false
            }
            if now { c.resume() }
        }
    }

    func release(_ key: String) {
        let next = slots.withLock { s -> CheckedContinuation<Void, Never>? in
            guard var slot = s[key] else { return nil }
            defer { s[key] = slot.count == 0 && slot.waiters.isEmpty ? nil : slot }
            if !slot.waiters.isEmpty { return slot.waiters.removeFirst() }  // the slot passes on
            slot.count -= 1
            return nil
        }
        next?.resume()
    }
}

/// Wakes the scheduler early (a new message, a finished delivery, a flush).
final class Doorbell: Sendable {
    private let state = Mutex<(rung: Bool, waiter: CheckedContinuation<Void, Never>?)>((false, nil))

    func ring() {
        let w = state.withLock { s -> CheckedContinuation<Void, Never>? in
            if let w = s.waiter {
                s.waiter = nil
                return w
            }
            s.rung = true
            return nil
        }
        w?.resume()
    }

    /// Returns at the next ring, or after `seconds` (a timer on `loop`).
    func wait(upTo seconds: Double, on loop: EventLoop) async {
        // Under load the bell has usually rung already: no timer then.
        let rung = state.withLock { s -> Bool in
            defer { s.rung = false }
            return s.rung
        }
        if rung { return }
        let timer = loop.scheduleTask(in: .milliseconds(Int64(seconds * 1000))) { self.ring() }
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let now = state.withLock { s -> Bool in
                if s.rung {
                    s.rung = false
                    return true
                }
                s.waiter = c
                return false
            }
            if now { c.resume() }
        }
        timer.cancel()
    }
}
