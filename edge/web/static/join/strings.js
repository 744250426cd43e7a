/* classroom-edge, the pupil's page: its texts in Vietnamese and English, and the language to use.
 * talk.js has its own texts for taking part (hand, messages, microphone). */

export const STRINGS = {
  vi: {
    title: 'Lớp {class} · Học trực tuyến', pageTitle: 'Học trực tuyến', classLabel: 'Lớp {class}',
    hello: 'Xin chào, {name}', board: 'Màn hình bảng', camera: 'Camera lớp học',
    connecting: 'Đang kết nối…', live: 'Đang học trực tiếp', reconnecting: 'Đang kết nối lại…',
    waiting: 'Chưa đến giờ học', ended: 'Buổi học đã kết thúc', error: 'Không vào được lớp học',
    connectingHelp: 'Em chờ một chút nhé.',
    reconnectingHelp: 'Mạng vừa bị ngắt. Trang sẽ tự vào lại lớp.',
    retryHelp: 'Chưa vào được lớp học. Trang sẽ tự thử lại.',
    offlineHelp: 'Điện thoại đang mất mạng. Em hãy kiểm tra Wi-Fi hoặc 4G.',
    nextAt: 'Tiết học tiếp theo bắt đầu lúc {time}.',
    period: 'Tiết {n}', startsIn: 'Bắt đầu sau {left}', startingNow: 'Sắp vào lớp…',
    lessonEnded: 'Tiết {subject} đã kết thúc lúc {time}.',
    autoJoin: 'Trang sẽ tự vào lớp khi đến giờ, em không cần tải lại trang.',
    rewatch: 'Xem lại bài giảng đã ghi',
    pickTitle: 'Em là ai? Chọn tên của em', iAm: 'Em là {name}', change: 'đổi',
    pickHelp: 'Chạm vào tên của em trong danh sách để vào lớp. Điện thoại sẽ nhớ tên này.',
    mute: 'Tắt tiếng', soundOn: 'Bật tiếng',
    removed: 'Em đã được mời ra khỏi tiết học', removedHelp: 'Thầy cô đã mời em ra khỏi tiết học này. Em hãy chờ tiết sau.',
    thanks: 'Cảm ơn em đã tham gia buổi học.',
    badLinkHelp: 'Đường link không còn hiệu lực. Em hãy xin thầy cô đường link mới.',
    noRoomHelp: 'Không tìm thấy lớp học này. Em hãy hỏi lại thầy cô đường link của lớp.',
    unsupported: 'Trình duyệt không hỗ trợ', unsupportedHelp: 'Em hãy mở đường link bằng Chrome hoặc Safari bản mới.',
    badPage: 'Trang bị lỗi', badPageHelp: 'Em hãy tải lại trang hoặc xin thầy cô đường link mới.',
    errorHelp: 'Mã lỗi {status}. Em hãy bấm “Thử lại” hoặc báo thầy cô.',
    today: 'hôm nay', tomorrow: 'ngày mai',
    weekdays: ['Chủ nhật', 'Thứ Hai', 'Thứ Ba', 'Thứ Tư', 'Thứ Năm', 'Thứ Sáu', 'Thứ Bảy'],
    network: 'Mạng:', good: 'Tốt', fair: 'Trung bình', poor: 'Yếu',
    weakHint: 'Mạng yếu: hình có thể bị giật, nhưng tiếng vẫn được ưu tiên.',
    poorHint: 'Mạng yếu — đã giảm chất lượng hình để giữ tiếng.',
    saveData: 'Tiết kiệm dữ liệu', saveDataHelp: 'Hình nhỏ hơn, tốn ít 3G/4G hơn. Tiếng vẫn rõ.',
    qualityLabel: 'Chất lượng:', qHigh: 'Cao', qLow: 'Thấp', qMid: 'Vừa', qPaused: 'Chỉ bảng và tiếng',
    qAudio: 'Chỉ có tiếng', stillsNote: 'Bảng: ảnh tĩnh (chữ vẫn rõ, chậm đổi hình)',
    dataUsed: 'Đã dùng {amount}',
    unmute: 'Chạm để bật tiếng', swap: 'Đổi vị trí hình', fullscreen: 'Phóng to', exitFullscreen: 'Thu nhỏ',
    retry: 'Thử lại', tip: 'Xoay ngang điện thoại để xem bảng to hơn.',
    noPicture: 'Trình duyệt này không hiện được hình của lớp',
    noPictureHelp: 'Em vẫn nghe được tiếng trong lớp, vẫn giơ tay và nhắn tin cho thầy cô được.',
    noPictureUse: 'Để xem hình camera và bảng, em hãy mở lại đường link bằng Chrome (điện thoại Android, máy tính) hoặc Safari (iPhone, iPad).'
  },
  en: {
    title: 'Class {class} · Live lesson', pageTitle: 'Live lesson', classLabel: 'Class {class}',
    hello: 'Hello, {name}', board: 'Board screen', camera: 'Classroom camera',
    connecting: 'Connecting…', live: 'Live lesson', reconnecting: 'Reconnecting…',
    waiting: 'The lesson has not started yet', ended: 'The lesson has ended', error: 'Cannot join the lesson',
    connectingHelp: 'Please wait a moment.',
    reconnectingHelp: 'The connection dropped. The page will rejoin by itself.',
    retryHelp: 'Could not join yet. The page will try again by itself.',
    offlineHelp: 'Your phone is offline. Please check Wi-Fi or mobile data.',
    nextAt: 'The next lesson starts at {time}.',
    period: 'Period {n}', startsIn: 'Starts in {left}', startingNow: 'Joining…',
    lessonEnded: 'The {subject} lesson ended at {time}.',
    autoJoin: 'The page will join by itself when it starts; no need to reload.',
    rewatch: 'Watch recorded lessons',
    pickTitle: 'Who are you? Pick your name', iAm: 'You are {name}', change: 'change',
    pickHelp: 'Tap your name in the list to join. This phone will remember it.',
    mute: 'Mute', soundOn: 'Sound on',
    removed: 'You were removed from the lesson', removedHelp: 'The teacher removed you from this lesson. Please wait for the next one.',
    thanks: 'Thank you for joining the lesson.',
    badLinkHelp: 'This link is no longer valid. Please ask your teacher for a new one.',
    noRoomHelp: 'This class was not found. Please ask your teacher for the class link again.',
    unsupported: 'Browser not supported', unsupportedHelp: 'Please open the link in a recent Chrome or Safari.',
    badPage: 'Page error', badPageHelp: 'Please reload the page or ask your teacher for a new link.',
    errorHelp: 'Error code {status}. Tap “Try again” or tell your teacher.',
    today: 'today', tomorrow: 'tomorrow',
    weekdays: ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'],
    network: 'Network:', good: 'Good', fair: 'Fair', poor: 'Weak',
    weakHint: 'Weak network: the picture may stutter, but sound comes first.',
    poorHint: 'Weak network — picture quality lowered to keep the sound.',
    saveData: 'Save data', saveDataHelp: 'Smaller picture, less mobile data. Sound stays clear.',
    qualityLabel: 'Quality:', qHigh: 'High', qLow: 'Low', qMid: 'Medium', qPaused: 'Board and sound only',
    qAudio: 'Sound only', stillsNote: 'Board: still pictures (text stays sharp, changes slowly)',
    dataUsed: 'Data used: {amount}',
    unmute: 'Tap to turn on sound', swap: 'Swap views', fullscreen: 'Full screen', exitFullscreen: 'Exit full screen',
    retry: 'Try again', tip: 'Turn your phone sideways to see the board bigger.',
    noPicture: 'This browser cannot show the class picture',
    noPictureHelp: 'You still hear the classroom, and can raise your hand and send messages.',
    noPictureUse: 'To see the camera and the board, open the link again in Chrome (Android phones, computers) or Safari (iPhone, iPad).'
  }
};

// ?lang=en|vi in the address wins, then the page's setting (config.lang), else Vietnamese.
export function pickLang(config) {
  const q = new URLSearchParams(location.search).get('lang');
  if (q === 'en' || q === 'vi') return q;
  return config && config.lang === 'en' ? 'en' : 'vi';
}

// t('hello', {name: 'An'}) -> 'Xin chào, An'; a {placeholder} without a value stays as it is.
export function translator(strings) {
  return function t(key, vars) {
    return String(strings[key]).replace(/\{(\w+)\}/g, (m, k) => (vars && k in vars ? vars[k] : m));
  };
}
