import MailMessage

/// How the text is built: HTML with no plain alternative, pictures instead
/// of words, text hidden from the reader, words disguised with look-alike
/// or invisible characters, a broken MIME structure, and the phrases that
/// ask for a password or a payment.
struct BodySignals: SignalDetector {
    static let names = ["MIME_MALFORMED", "HTML_ONLY", "HTML_ONLY_NO_MAILER", "HTML_IMAGE_ONLY", "HTML_HIDDEN_TEXT", "MIXED_SCRIPT_WORDS",
                        "INVISIBLE_CHARS", "CHARSET_UNEXPECTED", "CREDENTIAL_PROMPT", "HTML_FORM_IN_BODY", "NO_TEXT"]

    /// Charsets of scripts an English-language organisation rarely reads
    /// (SpamAssassin's CHARSET_FARAWAY idea); the fitted weight says how much it counts.
    static let farCharsets: Set<String> = ["gb2312", "gbk", "gb18030", "big5", "euc-kr", "ks_c_5601-1987", "iso-2022-jp",
                                           "euc-jp", "shift_jis", "windows-1251", "koi8-r", "iso-8859-5", "windows-874", "tis-620"]

    static let credentialPhrases = [
        "verify your account", "confirm your account", "verify your identity", "confirm your identity", "update your account",
        "account has been suspended", "account will be suspended", "account has been locked", "account will be closed",
        "unusual sign-in", "unusual activity", "suspicious activity", "confirm your password", "your password expires",
        "password will expire", "mailbox is full", "mailbox quota", "storage is full", "re-activate", "reactivate your",
        "validate your", "update your payment", "payment information", "billing information", "click below to verify",
        "login to your account", "log in to your account", "sign in to your account", "keep your account", "pending messages",
        "unable to deliver your", "delivery failed for your package", "shipment is on hold", "you have received a document",
        "shared a document with you", "view document", "review the document",
        // the same in the languages phishing most often arrives in besides English
        "verifique sua conta", "confirme seus dados", "atualize seus dados", "sua conta foi", "sua conta será",
        "regularize", "pendência", "acesse sua conta", "verifique su cuenta", "confirme sus datos", "actualice sus datos",
        "su cuenta ha sido", "su cuenta será", "vérifiez votre compte", "confirmer votre identité", "votre compte a été",
        "votre compte sera", "mettre à jour vos", "ihr konto wurde", "ihr konto wird", "bestätigen sie ihre",
        "aktualisieren sie ihre", "verifieer uw", "uw account is", "uw rekening", "il tuo account è", "verifica il tuo account",
    ]

    static let credentialSet = PhraseSet(credentialPhrases)

    static func detect(_ input: HeuristicInput, into out: inout [Signal]) {
        let m = input.mime
        if let p = m.problems.first { out.append(Signal("MIME_MALFORMED", p)) }
        let texts = m.parts.filter { !$0.isAttachment && $0.filename == nil }
        let hasHTML = texts.contains { $0.contentType == "text/html" }
        let hasPlain = texts.contains { $0.contentType == "text/plain" && $0.size > 0 }
        if hasHTML && !hasPlain {
            out.append(Signal("HTML_ONLY", "HTML with no plain-text alternative"))
            // Mail programs name themselves; bare HTML from none was written by a script.
            if input.headers.first("X-Mailer") == nil && input.headers.first("User-Agent") == nil {
                out.append(Signal("HTML_ONLY_NO_MAILER", "HTML with no plain-text alternative, and no mail program named"))
            }
        }
        let visible = input.text.visible
        if hasHTML && m.htmlImages > 0 && visible < 200 {
            out.append(Signal("HTML_IMAGE_ONLY", "\(m.htmlImages) image(s) and \(visible) characters of text"))
        }
        if visible < 20 && m.attachments.isEmpty { out.append(Signal("NO_TEXT", "the message has almost no text")) }
        if m.hiddenElements > 0 { out.append(Signal("HTML_HIDDEN_TEXT", "\(m.hiddenElements) element(s) styled to be invisible")) }
        if m.forms > 0 || m.passwordInputs > 0 { out.append(Signal("HTML_FORM_IN_BODY", "the HTML body holds a form")) }
        let invisible = input.text.invisible
        if let w = input.text.mixedWord.map({ String($0.prefix(30)) }) { out.append(Signal("MIXED_SCRIPT_WORDS", "\"\(w)\" mixes Latin with Cyrillic or Greek letters")) }
        // The subject and the sender's name are read before the text, and disguised the same way.
        let shownFirst = input.subject.invisible + TextStats.invisibleCount(input.value("From") ?? "")
        if invisible >= 3 {
            out.append(Signal("INVISIBLE_CHARS", "\(invisible) invisible characters inside the text"))
        } else if shownFirst >= 2 {
            out.append(Signal("INVISIBLE_CHARS", "\(shownFirst) invisible characters inside the subject or the sender's name"))
        }
        if let cs = texts.compactMap(\.charset).first(where: farCharsets.contains) {
            out.append(Signal("CHARSET_UNEXPECTED", "text in charset \(cs)"))
        } else {
            // Far-away text declared as Latin-1 (or not at all) reads as runs of accented letters.
            let (high, n) = (input.text.latin1Letters, input.text.sampled)
            if n >= 200 && high * 5 >= n { out.append(Signal("CHARSET_UNEXPECTED", "\(high) of \(n) characters are 8-bit letters")) }
        }
        if let phrase = input.textHits.first(.credential) {
            out.append(Signal("CREDENTIAL_PROMPT", "the text says \"\(phrase)\""))
        }
    }
}
