import Testing

@testable import Heuristics

/// Money held out to the reader, in several languages and currencies, and
/// not the amounts ordinary mail names: an invoice, an imbalance, a word
/// that only begins like a lure word, an amount in another sentence.
struct LureSignalsTests {
    func body(_ text: String) -> Set<String> { Make.signals(Make.plain, text) }

    @Test func balanceBonusOrPrizeWithAnAmount() {
        #expect(body("Hi, Zahlungsbestätigung. Ihr Guthaben von 6400,00 € steht zur Abholung bereit.\n").contains("BALANCE_CLAIM"))
        #expect(body("Sign up today and claim your bonus of 500 USDT in your account.\n").contains("BALANCE_CLAIM"))
        #expect(body("Your prize: $ 1,000,000 is waiting, reply with your bank details.\n").contains("BALANCE_CLAIM"))
        #expect(body("Seu saldo de R$ 2.500,00 foi liberado.\n").contains("BALANCE_CLAIM"))
        #expect(body("Your winnings of £250 have been credited.\n").contains("BALANCE_CLAIM"))
    }

    @Test func ordinaryAmountsAreNoLure() {
        #expect(!body("The invoice for March is $120.50, due on the 30th.\n").contains("BALANCE_CLAIM"), "no lure word")
        #expect(!body("The imbalance of 3 EUR came from rounding.\n").contains("BALANCE_CLAIM"), "a whole word only")
        #expect(!body("Our balance sheet looks good. The budget is $5000.\n").contains("BALANCE_CLAIM"), "another sentence")
        #expect(!body("The bonus round starts at 10 and ends when the others have left the building.\n").contains("BALANCE_CLAIM"), "no currency")
        #expect(!body("Check the balance of the wheels; we used 3 weights of 20 grams.\n").contains("BALANCE_CLAIM"))
    }
}

/// Wallet drainers and fake exchange notices: a coin or a wallet maker and
/// something to do with it, and not a text that only mentions one of them.
struct CryptoLureTests {
    func body(_ text: String) -> Set<String> { Make.signals(Make.plain, text) }

    @Test func aWalletToConnectOrAPhraseToReenter() {
        #expect(body("Your MetaMask wallet must be verified before Friday.\n").contains("CRYPTO_LURE"))
        #expect(body("Claim your USDT airdrop now.\n").contains("CRYPTO_LURE"))
        #expect(body("Enter your 12-word recovery phrase to keep your Trust Wallet active.\n").contains("CRYPTO_LURE"))
    }

    @Test func aMentionIsNoLure() {
        #expect(!body("The crypto subsystem gained a new cipher; the deposit of the patch is in -next.\n").contains("CRYPTO_LURE"), "crypto alone is cryptography")
        #expect(!body("The talk compared blockchain designs with ordinary databases.\n").contains("CRYPTO_LURE"))
        #expect(!body("I left my wallet at the office, could you claim the table?\n").contains("CRYPTO_LURE"))
        #expect(!body("We discussed BTCs and walletless designs.\n").contains("CRYPTO_LURE"), "whole words only")
    }
}

/// Subjects that push the reader to act on an account, a payment or a
/// notice, in the languages phishing writes them in, and subjects of
/// ordinary mail that share a word with them.
struct SubjectAlertTests {
    func subject(_ s: String) -> Set<String> {
        Make.signals(Make.plain.replacingOccurrences(of: "Subject: Notes from Tuesday", with: "Subject: " + s))
    }

    @Test func accountPaymentOrNotice() {
        for s in ["Unusual sign-in activity", "Security Notice – Recent Data Exposure Detected", "Please verify your mailbox",
                  "Boleto Vencendo Hoje RODRIGO FERREIRA", "Intimação de Testemunha", "Sie haben €_,_____ auf Ihr Konto erhalten. Bitte bestätigen Sie",
                  "Your account has been limited", "=?UTF-8?B?Tk9USUZJQ0HDh8ODTyBKVURJQ0lBTA==?="] {
            #expect(subject(s).contains("SUBJECT_ACCOUNT_ALERT"), "\(s)")
        }
    }

    @Test func ordinarySubjects() {
        for s in ["[PATCH] mm: fix the locked page accounting", "New package: libfoo 1.2", "Notes from Tuesday", "Re: document review",
                  "unverifiable claims in the draft", "Kontoauszug"] {
            #expect(!subject(s).contains("SUBJECT_ACCOUNT_ALERT"), "\(s)")
        }
    }
}
